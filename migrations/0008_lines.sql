-- 0008_lines.sql - linesd (issue 12): the charge outbox settled with no
-- transaction open while billingd is asked, the actor of each charge kept
-- for its audit row, and a line's status history.

-- ---------------------------------------------------------------------------
-- line_charges: settled in steps (services/linesd/lines.c): a settler claims
-- a pending row (claimed_until, a short transaction), calls billingd with no
-- transaction open, then applies the row under its lock if it is still
-- pending. The reconciliation pass takes only rows whose claim has lapsed,
-- so replicas do not ask billingd for the same row at once (they may, after
-- a lapse: Charge under the row's key answers the first charge, and the
-- apply happens once, under the lock).
--
-- The actor columns are the caller that asked for the charge (fd_caller_t as
-- fd/audit.h writes it), so that whoever applies the row (the call itself, a
-- retry, or the reconciliation pass on any replica) writes the action's one
-- audit row, with the person who asked, in the transaction that applies it.
-- ---------------------------------------------------------------------------
ALTER TABLE frontdesk.line_charges
  ADD COLUMN claimed_until    timestamptz,
  -- CreateTrialLine: the trials_left it answered (a replay answers the same).
  ADD COLUMN trials_left      integer  NOT NULL DEFAULT 0,
  ADD COLUMN actor_kind       smallint NOT NULL DEFAULT 0,   -- CredentialKind
  ADD COLUMN actor_role       smallint NOT NULL DEFAULT 0,   -- Role
  ADD COLUMN actor_tenant_id  bigint   NOT NULL DEFAULT 0,
  ADD COLUMN actor_account_id bigint   NOT NULL DEFAULT 0,
  ADD COLUMN actor_key_id     bigint   NOT NULL DEFAULT 0,
  ADD COLUMN actor_service    text     NOT NULL DEFAULT '',
  ADD COLUMN actor_path       text     NOT NULL DEFAULT '',
  ADD COLUMN actor_source     text     NOT NULL DEFAULT '',   -- client address, no port
  ADD CONSTRAINT line_charges_actor_lengths CHECK (char_length(actor_service) <= 31
                                                   AND char_length(actor_path) <= 400
                                                   AND char_length(actor_source) <= 64);

-- ---------------------------------------------------------------------------
-- What SetLineStatus did to a line, newest last: each change with its reason
-- and who made it (lines.proto, SetLineStatusRequest.reason: "kept in the
-- line's history"), shown in GetLineResponse.status_history. It replaces
-- lines.status_reason, which kept only the last reason. Deleted with the
-- line (the audit trail keeps the action itself).
-- ---------------------------------------------------------------------------
CREATE TABLE frontdesk.line_status_history (
  tenant_id        bigint NOT NULL,
  id               bigint GENERATED ALWAYS AS IDENTITY,
  line_id          bigint NOT NULL,
  status           text NOT NULL,
  previous_status  text NOT NULL,
  reason           text NOT NULL DEFAULT '',
  actor            text NOT NULL DEFAULT '',      -- "admin:7", "reseller:42" (fd_audit_actor_label)
  actor_account_id bigint NOT NULL DEFAULT 0,
  changed_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT line_status_history_status CHECK (status IN ('active', 'disabled', 'banned')),
  CONSTRAINT line_status_history_previous CHECK (previous_status IN ('', 'active', 'disabled', 'banned', 'expired')),
  CONSTRAINT line_status_history_reason_length CHECK (char_length(reason) <= 500),
  CONSTRAINT line_status_history_actor_length CHECK (char_length(actor) <= 100)
);
CALL frontdesk.enable_tenant_rls('frontdesk.line_status_history');
CREATE INDEX line_status_history_line ON frontdesk.line_status_history (tenant_id, line_id, id);
GRANT SELECT, INSERT, DELETE ON frontdesk.line_status_history TO frontdesk_linesd;

-- The last reason each line had becomes the first entry of its history
-- (who set it and what came before were not kept). Tenant by tenant: the
-- owner obeys the tenant wall too (FORCE ROW LEVEL SECURITY).
DO $$
DECLARE
  t bigint;
BEGIN
  FOR t IN SELECT id FROM frontdesk.tenants ORDER BY id LOOP
    PERFORM set_config('frontdesk.tenant_id', t::text, true);
    INSERT INTO frontdesk.line_status_history (tenant_id, line_id, status, previous_status, reason, changed_at)
    SELECT tenant_id, id, state, '', status_reason, updated_at
      FROM frontdesk.lines
     WHERE tenant_id = t AND status_reason <> '' AND state IN ('active', 'disabled', 'banned');
  END LOOP;
  PERFORM set_config('frontdesk.tenant_id', '', true);
END
$$;
ALTER TABLE frontdesk.lines DROP COLUMN status_reason;
