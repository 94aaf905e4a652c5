-- 0019_generic_plans.sql - the hot statements over the hash-partitioned
-- tables of billingd, authd and the runtime (ledger_entries, audit_events,
-- idempotency) as plpgsql functions with generic plans, as
-- frontdesk.authorize_playback already is (0004_lines.sql).
--
-- Why functions: a plpgsql function keeps its statements' plans in the
-- backend for the life of the session, whoever calls it, so the plans
-- survive a pooler in transaction mode (pgbouncer), which cannot keep named
-- prepared statements (FRONTDESK_DB_PREPARED=false sends every statement
-- unnamed: parsed and planned again on every call). Why generic plans: for a
-- statement that reads or updates a partitioned table by tenant_id, the plan
-- cache compares the generic plan (all eight partitions, pruned at run time)
-- with a custom one (pruned to one at planning) and keeps choosing the custom
-- one, which it then plans again on every call. Measured on PostgreSQL 15
-- with pg_stat_statements, as prepared statements, 100 calls on 2
-- connections: the replay lookup of a charge, the idempotency read and
-- update, the rate-limited repeat's UPDATE each made 102 plans; the INSERTs
-- (a charge's UPDATE of credit_balances feeding its entry, an audit row, an
-- idempotency claim) kept their generic plan after 5 custom ones (12 plans),
-- so those three gain only behind a pooler. Run-time pruning still reaches
-- one partition. The price of the call itself: a loop of 10,000 charges in
-- one backend (a DO block, no client) took 129-187 us a charge as the plain
-- statement, 160-218 us through billing_charge.
--
-- Each function runs as its caller (SECURITY INVOKER): row-level security
-- and the grants on the tables apply as before; each is granted to the
-- services that ran its statement.

-- ---------------------------------------------------------------------------
-- billingd: an entry as billingd reads it (services/billingd/store.c,
-- enum entry_col: the same columns in the same order).
-- ---------------------------------------------------------------------------
CREATE TYPE frontdesk.billing_entry AS (
  id                 bigint,
  created_at         bigint,    -- Unix seconds
  kind               text,
  from_account       bigint,
  to_account         bigint,
  amount             bigint,
  from_balance_after bigint,
  to_balance_after   bigint,
  charge_reason      text,      -- '' for none
  line_id            bigint,    -- 0 for none
  refund_of          bigint,    -- 0 for none
  note               text,
  actor_account      bigint,    -- 0 for none
  actor_service      text,      -- '' for none
  request_hash       text,      -- hex
  refunded           bigint     -- the amount refunded since
);

-- Charge, the hot path: the conditional UPDATE of the reseller's balance
-- (no overdraft under any interleaving) feeding the INSERT of the entry, one
-- statement. No row: the balance was short (or the reseller has none). An
-- entry under the same key fails on ledger_entries_idem (23505).
CREATE FUNCTION frontdesk.billing_charge(
  p_tenant bigint, p_reseller bigint, p_amount bigint, p_reason text, p_line bigint, p_note text,
  p_actor_service text, p_idem text, p_hash text)
RETURNS SETOF frontdesk.billing_entry
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  WITH debit AS (
    UPDATE frontdesk.credit_balances SET balance = balance - p_amount, updated_at = now()
     WHERE tenant_id = p_tenant AND account_id = p_reseller AND balance >= p_amount
    RETURNING balance)
  INSERT INTO frontdesk.ledger_entries AS e (tenant_id, kind, from_account, to_account, amount,
    from_balance_after, to_balance_after, charge_reason, line_id, note, actor_service, idem_key, request_hash)
  SELECT p_tenant, 'charge', p_reseller, -1, p_amount, debit.balance, 0, p_reason, p_line, p_note,
         p_actor_service, p_idem, decode(p_hash, 'hex') FROM debit
  RETURNING e.id, floor(extract(epoch FROM e.created_at))::bigint, e.kind, e.from_account, e.to_account,
            e.amount, e.from_balance_after, e.to_balance_after, coalesce(e.charge_reason, ''),
            coalesce(e.line_id, 0), coalesce(e.refund_of, 0), e.note, coalesce(e.actor_account, 0),
            coalesce(e.actor_service, ''), encode(e.request_hash, 'hex'), 0::bigint;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.billing_charge(bigint, bigint, bigint, text, bigint, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.billing_charge(bigint, bigint, bigint, text, bigint, text, text, text, text)
  TO frontdesk_billingd;

-- The entry made under an idempotency key (a replay, or the first of
-- concurrent duplicates), with the amount refunded since.
CREATE FUNCTION frontdesk.billing_entry_by_idem(p_tenant bigint, p_idem text)
RETURNS SETOF frontdesk.billing_entry
LANGUAGE plpgsql STABLE SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  SELECT e.id, floor(extract(epoch FROM e.created_at))::bigint, e.kind, e.from_account, e.to_account,
         e.amount, e.from_balance_after, e.to_balance_after, coalesce(e.charge_reason, ''),
         coalesce(e.line_id, 0), coalesce(e.refund_of, 0), e.note, coalesce(e.actor_account, 0),
         coalesce(e.actor_service, ''), encode(e.request_hash, 'hex'),
         coalesce((SELECT r.amount FROM frontdesk.ledger_entries r
                    WHERE r.tenant_id = e.tenant_id AND r.refund_of = e.id), 0)
    FROM frontdesk.ledger_entries e
   WHERE e.tenant_id = p_tenant AND e.idem_key = p_idem;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.billing_entry_by_idem(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.billing_entry_by_idem(bigint, text) TO frontdesk_billingd;

-- Refund: (part of) a charge credited back, one statement. p_amount 0: the
-- whole charge. No row: no such charge, or it is smaller than the amount. A
-- second refund of one charge fails on ledger_entries_refund_once, an entry
-- under the same key on ledger_entries_idem (23505).
CREATE FUNCTION frontdesk.billing_refund(
  p_tenant bigint, p_charge bigint, p_amount bigint, p_note text, p_actor_service text, p_idem text,
  p_hash text)
RETURNS SETOF frontdesk.billing_entry
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  WITH c AS (
    SELECT l.from_account, l.amount, l.line_id FROM frontdesk.ledger_entries l
     WHERE l.tenant_id = p_tenant AND l.id = p_charge AND l.kind = 'charge'),
  credit AS (
    UPDATE frontdesk.credit_balances b
       SET balance = b.balance + CASE WHEN p_amount = 0 THEN c.amount ELSE p_amount END, updated_at = now()
      FROM c WHERE b.tenant_id = p_tenant AND b.account_id = c.from_account AND p_amount <= c.amount
    RETURNING b.balance, c.from_account, c.line_id, CASE WHEN p_amount = 0 THEN c.amount ELSE p_amount END AS n)
  INSERT INTO frontdesk.ledger_entries AS e (tenant_id, kind, from_account, to_account, amount,
    from_balance_after, to_balance_after, line_id, refund_of, note, actor_service, idem_key, request_hash)
  SELECT p_tenant, 'refund', -1, credit.from_account, credit.n, 0, credit.balance, credit.line_id, p_charge,
         p_note, p_actor_service, p_idem, decode(p_hash, 'hex') FROM credit
  RETURNING e.id, floor(extract(epoch FROM e.created_at))::bigint, e.kind, e.from_account, e.to_account,
            e.amount, e.from_balance_after, e.to_balance_after, coalesce(e.charge_reason, ''),
            coalesce(e.line_id, 0), coalesce(e.refund_of, 0), e.note, coalesce(e.actor_account, 0),
            coalesce(e.actor_service, ''), encode(e.request_hash, 'hex'), 0::bigint;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.billing_refund(bigint, bigint, bigint, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.billing_refund(bigint, bigint, bigint, text, text, text, text)
  TO frontdesk_billingd;

-- ---------------------------------------------------------------------------
-- The runtime: one row of the audit trail (services/runtime/audit.c,
-- fd_audit_add), written by every service in the action's transaction.
-- p_detail: key, value pairs (NULL: none).
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.audit_add(
  p_tenant bigint, p_actor text, p_actor_tenant bigint, p_actor_account bigint, p_actor_role text,
  p_actor_path text, p_actor_key bigint, p_action text, p_target text, p_source text, p_outcome text,
  p_detail text[])
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  INSERT INTO frontdesk.audit_events (tenant_id, actor, actor_tenant_id, actor_account_id, actor_role,
    actor_path, actor_key_id, action, target, source, outcome, detail)
  VALUES (p_tenant, p_actor, p_actor_tenant, p_actor_account, p_actor_role, p_actor_path, p_actor_key,
          p_action, p_target, p_source, p_outcome, coalesce(jsonb_object(p_detail), '{}'::jsonb));
END
$$;
REVOKE ALL ON FUNCTION frontdesk.audit_add(bigint, text, bigint, bigint, text, text, bigint, text, text, text,
                                           text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.audit_add(bigint, text, bigint, bigint, text, text, bigint, text, text, text,
                                              text, text[])
  TO frontdesk_authd, frontdesk_billingd, frontdesk_linesd, frontdesk_routerd;

-- ---------------------------------------------------------------------------
-- authd: one more failed login past the limit counted on the window's
-- 'login.rate_limited' row (the one UPDATE 0006_audit.sql's trigger lets
-- through). Its id, or no row when the window has none yet.
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.audit_limited_repeat(
  p_tenant bigint, p_actor text, p_source text, p_since double precision, p_tenant_slug text)
RETURNS SETOF bigint
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  UPDATE frontdesk.audit_events e SET repeats = e.repeats + 1, last_at = greatest(e.last_at, now())
   WHERE e.tenant_id = p_tenant AND e.action = 'login.rate_limited' AND e.actor = p_actor
     AND e.source = p_source AND e.at >= to_timestamp(p_since)
     AND (e.detail ->> 'tenant_slug') IS NOT DISTINCT FROM p_tenant_slug
  RETURNING e.id;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.audit_limited_repeat(bigint, text, text, double precision, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.audit_limited_repeat(bigint, text, text, double precision, text)
  TO frontdesk_authd;

-- ---------------------------------------------------------------------------
-- The runtime: claim-first idempotency keys (tenants/idem.c, fd/idem.h),
-- used by authd, linesd and routerd in the transaction of the work they
-- guard. The restrictive policy on service still applies (SECURITY INVOKER).
-- ---------------------------------------------------------------------------

-- Claims the key: true, or no row when it is taken. DO NOTHING on a conflict
-- waits for the holder of the key to finish, so the next statement sees its
-- row (READ COMMITTED).
CREATE FUNCTION frontdesk.idem_claim(p_tenant bigint, p_service text, p_key text, p_hash text)
RETURNS SETOF boolean
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash)
  VALUES (p_tenant, p_service, p_key, decode(p_hash, 'hex')) ON CONFLICT DO NOTHING RETURNING true;
END
$$;

-- The first call's record of a key: its request's hash (hex), what it made
-- (0 while in flight) and its stored answer (NULL: none).
CREATE FUNCTION frontdesk.idem_first(p_tenant bigint, p_service text, p_key text)
RETURNS TABLE (first_hash text, first_result bigint, first_response bytea)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  SELECT encode(i.request_hash, 'hex'), coalesce(i.result_id, 0), i.response
    FROM frontdesk.idempotency i
   WHERE i.tenant_id = p_tenant AND i.service = p_service AND i.idem_key = p_key;
END
$$;

-- What the first call made, recorded on its key.
CREATE FUNCTION frontdesk.idem_done(p_tenant bigint, p_service text, p_key text, p_result bigint,
                                    p_response bytea)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  UPDATE frontdesk.idempotency i SET result_id = p_result, response = p_response
   WHERE i.tenant_id = p_tenant AND i.service = p_service AND i.idem_key = p_key;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.idem_claim(bigint, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION frontdesk.idem_first(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION frontdesk.idem_done(bigint, text, text, bigint, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.idem_claim(bigint, text, text, text)
  TO frontdesk_authd, frontdesk_linesd, frontdesk_routerd;
GRANT EXECUTE ON FUNCTION frontdesk.idem_first(bigint, text, text)
  TO frontdesk_authd, frontdesk_linesd, frontdesk_routerd;
GRANT EXECUTE ON FUNCTION frontdesk.idem_done(bigint, text, text, bigint, bytea)
  TO frontdesk_authd, frontdesk_linesd, frontdesk_routerd;
