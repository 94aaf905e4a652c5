-- 0012_tenant_jobs.sql - what is due when, per tenant (DESIGN.md, Tenancy):
-- jobs that run for every tenant (expiry, session timeouts, reconciliation,
-- clean-ups) visit only the tenants with something due, and do each
-- tenant's work in its own RLS-walled transaction (tenants/jobs.c).
--
-- Platform-level: the walk reads across tenants before any tenant is set,
-- so the column is `tenant`, not `tenant_id` (no tenant wall applies;
-- tests/db/schema_lint.sh names it as an exception). Each service keeps the
-- rows of its own jobs, named "<service>.<job>": a policy on the job's
-- prefix walls the services from each other's rows.

CREATE TABLE frontdesk.tenant_jobs (
  job           text        NOT NULL,
  tenant        bigint      NOT NULL,
  due_at        timestamptz,            -- NULL: nothing due
  gen           bigint      NOT NULL DEFAULT 0,  -- bumped by every fd_job_due
  claimed_until timestamptz,            -- a walker is on it until then
  PRIMARY KEY (job, tenant),
  CONSTRAINT tenant_jobs_job CHECK (job ~ '^[a-z]+\.[a-z_]{1,60}$'),
  CONSTRAINT tenant_jobs_tenant CHECK (tenant >= 0)
);
COMMENT ON TABLE frontdesk.tenant_jobs IS 'platform-level: per job, the tenants with work due and when';
CREATE INDEX tenant_jobs_due ON frontdesk.tenant_jobs (job, due_at) WHERE due_at IS NOT NULL;

ALTER TABLE frontdesk.tenant_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.tenant_jobs FORCE ROW LEVEL SECURITY;
-- frontdesk_linesd keeps "linesd.*", frontdesk_routerd "routerd.*", ...
CREATE POLICY own_jobs ON frontdesk.tenant_jobs
  USING (split_part(job, '.', 1) = substring(current_user FROM '^frontdesk_(.*)$'))
  WITH CHECK (split_part(job, '.', 1) = substring(current_user FROM '^frontdesk_(.*)$'));
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.tenant_jobs
   TO frontdesk_authd, frontdesk_billingd, frontdesk_linesd, frontdesk_routerd;
