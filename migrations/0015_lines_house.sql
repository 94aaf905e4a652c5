-- 0015_lines_house.sql - linesd's share of the house in order (issue 12,
-- items 8-11):
--
-- - Its idempotency keys move to the one scheme (tenants/fd/idem.h,
--   frontdesk.idempotency, service 'linesd'): the catalog's creates (they
--   were in frontdesk.lines_idempotency, dropped here) and the requests
--   behind line charges (CreateLine, CreateTrialLine, ExtendLine: the key
--   was looked up in line_charges; the charge row keeps it, as the outbox
--   that names its request). The keys already made are copied, so a retry
--   of a request made before the upgrade still answers the first result.
--   The key format is the same ("<Method>/<actor>/<client key>"), and so is
--   the fingerprint (a BLAKE2b of the re-packed request).
-- - The per-tenant jobs (frontdesk.tenant_jobs, tenants/fd/jobs.h): every
--   tenant with lines is due now for linesd's three jobs, so the first walk
--   after the upgrade finds whatever was pending and each job records when
--   it is due next.
--
-- The copies cross tenants and services, so the tables' row-level security
-- is not forced on their owner (who runs this) for the length of this
-- migration's transaction alone, and forced again at its end.

ALTER TABLE frontdesk.idempotency NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.tenant_jobs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.line_charges NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.lines NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.lines_idempotency NO FORCE ROW LEVEL SECURITY;

INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash, result_id, created_at)
SELECT tenant_id, 'linesd', idem_key, request_hash, result_id, created_at
  FROM frontdesk.lines_idempotency
ON CONFLICT DO NOTHING;

INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash, result_id, created_at)
SELECT tenant_id, 'linesd', idem_key, request_hash, id, created_at
  FROM frontdesk.line_charges
 WHERE octet_length(request_hash) = 32
ON CONFLICT DO NOTHING;

DROP TABLE frontdesk.lines_idempotency;

INSERT INTO frontdesk.tenant_jobs (job, tenant, due_at)
SELECT j.job, t.tenant_id, now()
  FROM (SELECT DISTINCT tenant_id FROM frontdesk.lines) t
 CROSS JOIN (VALUES ('linesd.expiry'), ('linesd.session_timeout'), ('linesd.reconcile')) AS j(job)
ON CONFLICT (job, tenant) DO UPDATE SET due_at = now();

ALTER TABLE frontdesk.idempotency FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.tenant_jobs FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.line_charges FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.lines FORCE ROW LEVEL SECURITY;
