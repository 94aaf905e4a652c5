-- 0013_idempotency.sql - one idempotency table for every service that keeps
-- keys apart from the work's own rows (tenants/fd/idem.h): authd, linesd,
-- routerd. (billingd's keys stay in the ledger entry itself.) Each service
-- reaches only its own rows: the tenant wall plus a restrictive policy on
-- `service`, the owning role's name without "frontdesk_".

CREATE TABLE frontdesk.idempotency (
  tenant_id    bigint NOT NULL,
  service      text   NOT NULL,
  idem_key     text   NOT NULL,       -- "<Method>/<actor>/<client key>"
  request_hash bytea  NOT NULL,       -- BLAKE2b of the re-packed request
  result_id    bigint,                -- what the first call made (NULL while in flight)
  response     bytea,                 -- the first answer, when an id is not enough
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, service, idem_key),
  CONSTRAINT idempotency_key_length CHECK (octet_length(idem_key) BETWEEN 1 AND 300),
  CONSTRAINT idempotency_hash_length CHECK (octet_length(request_hash) = 32),
  CONSTRAINT idempotency_response_size CHECK (octet_length(response) <= 65536)
) PARTITION BY HASH (tenant_id);
COMMENT ON TABLE frontdesk.idempotency IS 'idempotency keys of creates and once-only calls (authd, linesd, routerd)';
CALL frontdesk.create_hash_partitions('frontdesk.idempotency', 8);
CALL frontdesk.enable_tenant_rls('frontdesk.idempotency');
CREATE POLICY own_service ON frontdesk.idempotency AS RESTRICTIVE
  USING (service = substring(current_user FROM '^frontdesk_(.*)$'))
  WITH CHECK (service = substring(current_user FROM '^frontdesk_(.*)$'));
CREATE INDEX idempotency_created ON frontdesk.idempotency (tenant_id, created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.idempotency
   TO frontdesk_authd, frontdesk_linesd, frontdesk_routerd;
