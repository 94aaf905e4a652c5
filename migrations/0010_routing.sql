-- 0010_routing.sql - node keys' prefixes without any of the secret (issue 12).
--
-- A node's key_prefix was "fdn_<tenant>_<id>_" plus the secret's first six
-- characters; it is now the non-secret head only, as an API key's prefix is.
-- Stored prefixes lose those characters. nodes is a tenant table with FORCEd
-- row-level security, so each tenant's rows are reached in turn with the
-- tenant setting (tenant 0, the shared pool, included).

DO $$
DECLARE
  t bigint;
BEGIN
  FOR t IN SELECT 0 UNION SELECT id FROM frontdesk.tenants LOOP
    PERFORM set_config('frontdesk.tenant_id', t::text, true);
    UPDATE frontdesk.nodes
       SET key_prefix = substring(key_prefix FROM '^fdn_[0-9]+_[0-9]+_')
     WHERE tenant_id = t AND key_prefix !~ '^fdn_[0-9]+_[0-9]+_$';
  END LOOP;
  PERFORM set_config('frontdesk.tenant_id', '', true);
END
$$;

ALTER TABLE frontdesk.nodes
  ADD CONSTRAINT nodes_key_prefix CHECK (key_prefix ~ '^fdn_[0-9]+_[0-9]+_$');
