-- 0003_billing.sql - billingd's double-entry credit ledger.
--
-- Accounts of a tenant: one per reseller (account_id = its account id), the
-- issuance account (account_id 0: minus everything minted, the only one below
-- zero) and the consumption account (account_id -1: everything charged less
-- refunds). Balances are kept in credit_balances for resellers and issuance
-- only: the consumption account is credited by every charge, so a row of its
-- own would be one hot lock serialising every reseller's charges; its
-- balance is derived (minus the sum of the other accounts).

CREATE TABLE frontdesk.credit_balances (
  tenant_id  bigint NOT NULL,
  account_id bigint NOT NULL,
  balance    bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, account_id),
  CONSTRAINT credit_balances_account CHECK (account_id >= 0),
  -- Overdraft is impossible, whatever the interleaving: the conditional
  -- UPDATE refuses it first, this refuses what a bug would let through.
  CONSTRAINT credit_balances_not_negative CHECK (account_id = 0 OR balance >= 0)
);
COMMENT ON TABLE frontdesk.credit_balances IS 'reseller and issuance balances; the consumption balance is derived';
CALL frontdesk.enable_tenant_rls('frontdesk.credit_balances');
GRANT SELECT, INSERT ON frontdesk.credit_balances TO frontdesk_billingd;
GRANT UPDATE (balance, updated_at) ON frontdesk.credit_balances TO frontdesk_billingd;

-- Every movement: amount credits from one account to another. Append-only.
-- idem_key is "<method>/<caller>/<client key>": the entry is its own
-- idempotency record (kept as long as the ledger: forever), so the hot path
-- writes one row. request_hash tells a replay from a reuse of the key.
CREATE TABLE frontdesk.ledger_entries (
  tenant_id          bigint NOT NULL,
  id                 bigint GENERATED ALWAYS AS IDENTITY,
  created_at         timestamptz NOT NULL DEFAULT now(),
  kind               text NOT NULL,
  from_account       bigint NOT NULL,
  to_account         bigint NOT NULL,
  amount             bigint NOT NULL,
  from_balance_after bigint NOT NULL,
  to_balance_after   bigint NOT NULL,
  charge_reason      text,
  line_id            bigint,
  refund_of          bigint,
  note               text NOT NULL DEFAULT '',
  actor_account      bigint,
  actor_service      text,
  idem_key           text NOT NULL,
  request_hash       bytea NOT NULL,
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT ledger_entries_kind CHECK (
    (kind = 'mint' AND from_account = 0 AND to_account > 0) OR
    (kind = 'transfer' AND from_account > 0 AND to_account > 0 AND from_account <> to_account) OR
    (kind = 'charge' AND from_account > 0 AND to_account = -1) OR
    (kind = 'refund' AND from_account = -1 AND to_account > 0 AND refund_of IS NOT NULL)),
  CONSTRAINT ledger_entries_amount CHECK (amount > 0),
  CONSTRAINT ledger_entries_charge_reason CHECK (charge_reason IN ('line_created', 'line_extended')),
  CONSTRAINT ledger_entries_note_length CHECK (char_length(note) <= 500),
  CONSTRAINT ledger_entries_actor CHECK ((actor_account IS NULL) <> (actor_service IS NULL)),
  CONSTRAINT ledger_entries_idem_key_length CHECK (octet_length(idem_key) <= 300)
) PARTITION BY HASH (tenant_id);
COMMENT ON TABLE frontdesk.ledger_entries IS 'the credit ledger: append-only, one row per movement';
CALL frontdesk.create_hash_partitions('frontdesk.ledger_entries', 8);
CALL frontdesk.enable_tenant_rls('frontdesk.ledger_entries');
CREATE UNIQUE INDEX ledger_entries_idem ON frontdesk.ledger_entries (tenant_id, idem_key);
-- A charge is refunded at most once.
CREATE UNIQUE INDEX ledger_entries_refund_once ON frontdesk.ledger_entries (tenant_id, refund_of)
  WHERE refund_of IS NOT NULL;
CREATE INDEX ledger_entries_from ON frontdesk.ledger_entries (tenant_id, from_account, id);
CREATE INDEX ledger_entries_to ON frontdesk.ledger_entries (tenant_id, to_account, id);
CREATE INDEX ledger_entries_line ON frontdesk.ledger_entries (tenant_id, line_id) WHERE line_id IS NOT NULL;
GRANT SELECT, INSERT ON frontdesk.ledger_entries TO frontdesk_billingd;

-- The database itself refuses to change history, whoever asks (the owner
-- and superusers included, short of dropping the trigger in a migration).
CREATE FUNCTION frontdesk.refuse_ledger_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'frontdesk.ledger_entries is append-only: % refused', TG_OP
    USING ERRCODE = '42501', HINT = 'correct a mistake with a new entry';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON frontdesk.ledger_entries
  FOR EACH ROW EXECUTE FUNCTION frontdesk.refuse_ledger_change();
-- TRUNCATE triggers are per table: the parent's does not cover a partition
-- truncated directly, so each partition gets its own.
DO $$
BEGIN
  FOR i IN 0 .. 7 LOOP
    EXECUTE format('CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON frontdesk.%I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION frontdesk.refuse_ledger_change()',
                   'ledger_entries_p' || i);
  END LOOP;
END
$$;
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON frontdesk.ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION frontdesk.refuse_ledger_change();
