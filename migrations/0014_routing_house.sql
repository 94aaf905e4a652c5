-- 0014_routing_house.sql - RegisterNode's idempotency keys move to the one
-- table every service shares (0013_idempotency.sql, tenants/fd/idem.h), as
-- service 'routerd' with the node's id as the result. Their key
-- ("RegisterNode/<actor>/<client key>") and request hash (BLAKE2b of the
-- re-packed request) are already what fd/idem.h makes, so a retry of a
-- registration made before this migration still answers its node.
--
-- Both tables FORCE row-level security, and idempotency's restrictive
-- policy lets each service role reach only its own rows: the owner copies
-- them with the policies set aside for this transaction only (ALTER TABLE
-- holds its ACCESS EXCLUSIVE lock until the migration commits, so no one
-- sees the tables without them), then puts them back.

ALTER TABLE frontdesk.routing_idempotency NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.idempotency NO FORCE ROW LEVEL SECURITY;

INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash, result_id, created_at)
SELECT tenant_id, 'routerd', idem_key, request_hash, result_id, created_at
  FROM frontdesk.routing_idempotency
    ON CONFLICT DO NOTHING;

ALTER TABLE frontdesk.idempotency FORCE ROW LEVEL SECURITY;
DROP TABLE frontdesk.routing_idempotency;
