-- 0018_hosts.sql - brand host names: the host names players use to reach a
-- tenant through the HTTP edge (AuthService RequestHost, ApproveHost,
-- ListHosts, DeleteHost; the edge reads them through ListBrandHosts).
--
-- Platform-level, like frontdesk.tenants: a host name is unique across the
-- platform (that is the point: one name, one brand), so its key is the name
-- alone, and the edge reads every tenant's at once. tenant_id says whose it
-- is; no tenant wall applies (tests/db/schema_lint.sh names the table as an
-- exception). Only authd's role reaches it; the edge asks authd.
--
-- host_name is stored as fd_hostname_normalize makes it (fd/hostname.h):
-- lower case, A-labels (punycode), no port, no trailing dot. The checks
-- below are the second wall. id orders the pages of ListHosts.

CREATE TABLE frontdesk.brand_hosts (
  host_name  text COLLATE "C" PRIMARY KEY,
  id         bigint GENERATED ALWAYS AS IDENTITY,
  tenant_id  bigint NOT NULL,
  status     text NOT NULL DEFAULT 'pending',
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT brand_hosts_id_key UNIQUE (id),
  CONSTRAINT brand_hosts_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES frontdesk.tenants (id),
  -- The platform (tenant 0) has no brand: its own names are FRONTDESK_PLATFORM_HOSTS.
  CONSTRAINT brand_hosts_tenant CHECK (tenant_id > 0),
  CONSTRAINT brand_hosts_status CHECK (status IN ('pending', 'approved', 'rejected')),
  CONSTRAINT brand_hosts_name_length CHECK (octet_length(host_name) BETWEEN 1 AND 253),
  CONSTRAINT brand_hosts_name_format CHECK (
    host_name ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
    AND host_name !~ '\.([0-9]+|0x[0-9a-f]*)$'),
  CONSTRAINT brand_hosts_reason_length CHECK (char_length(reason) <= 500)
);
COMMENT ON TABLE frontdesk.brand_hosts IS
  'platform-level: brand host names, unique across the platform, each held by one tenant';
-- A tenant's names, in ListHosts' order.
CREATE INDEX brand_hosts_tenant ON frontdesk.brand_hosts (tenant_id, id);
-- ListBrandHosts: the approved ones.
CREATE INDEX brand_hosts_approved ON frontdesk.brand_hosts (tenant_id) WHERE status = 'approved';

GRANT SELECT, INSERT, DELETE ON frontdesk.brand_hosts TO frontdesk_authd;
GRANT UPDATE (status, reason, updated_at) ON frontdesk.brand_hosts TO frontdesk_authd;
