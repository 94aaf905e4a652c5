-- 0016_auth_house.sql - authd's idempotency keys move to the one table every
-- service shares (0013_idempotency.sql, tenants/fd/idem.h), as service
-- 'authd', and frontdesk.auth_idempotency goes. Each row keeps its tenant
-- (0 for CreateTenant's), its request hash (authd's keyed BLAKE2b of the
-- packed request, which authd still makes: its requests carry passwords)
-- and its first answer's bytes; its key becomes what fd_idem_make makes of
-- the old method and key ("CreateReseller/42" and "k" ->
-- "CreateReseller/acct:42/k"), so a retry of a create made before this
-- migration still answers its first result. result_id is the id the answer
-- leads with (the tenant, the reseller, the API key).
--
-- Both tables FORCE row-level security, and idempotency's restrictive
-- policy lets each service role reach only its own rows: the owner copies
-- them with the policies set aside for this transaction only (ALTER TABLE
-- holds its ACCESS EXCLUSIVE lock until the migration commits), then puts
-- them back, as 0014_routing_house.sql does.

-- The id of the message in field 1 of a packed answer: field 1 (tag 0x0a),
-- its length, then its own field 1 (tag 0x08), a varint. NULL if the bytes
-- are not that shape.
CREATE FUNCTION pg_temp.answer_id(b bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  i int := 1;
  v bigint := 0;
  shift int := 0;
  x int;
BEGIN
  IF length(b) < 4 OR get_byte(b, 0) <> 10 THEN
    RETURN NULL;
  END IF;
  WHILE get_byte(b, i) >= 128 LOOP   -- the length
    i := i + 1;
  END LOOP;
  i := i + 1;
  IF get_byte(b, i) <> 8 THEN
    RETURN NULL;
  END IF;
  LOOP
    i := i + 1;
    x := get_byte(b, i);
    v := v | ((x & 127)::bigint << shift);
    EXIT WHEN x < 128;
    shift := shift + 7;
    IF shift > 56 THEN
      RETURN NULL;
    END IF;
  END LOOP;
  RETURN v;
EXCEPTION WHEN program_limit_exceeded OR array_subscript_error OR invalid_parameter_value THEN
  RETURN NULL;
END $$;

ALTER TABLE frontdesk.auth_idempotency NO FORCE ROW LEVEL SECURITY;
ALTER TABLE frontdesk.idempotency NO FORCE ROW LEVEL SECURITY;

INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash, result_id, response, created_at)
SELECT tenant_id, 'authd',
       split_part(method, '/', 1) || '/acct:' || split_part(method, '/', 2) || '/' || key,
       request_hash, pg_temp.answer_id(response), response, created_at
  FROM frontdesk.auth_idempotency
    ON CONFLICT DO NOTHING;

ALTER TABLE frontdesk.idempotency FORCE ROW LEVEL SECURITY;
DROP TABLE frontdesk.auth_idempotency;
DROP FUNCTION pg_temp.answer_id(bytea);
