-- 0006_audit.sql - the audit trail (issue 12): who did what, to what, from
-- where, with what outcome. Every service appends to frontdesk.audit_events
-- in the same transaction as the action it records; nobody updates or
-- deletes (the one narrow exception below); authd serves the reads
-- (AuthService.ListAuditEvents).

ALTER TABLE frontdesk.audit_events RENAME COLUMN subject TO target;
ALTER TABLE frontdesk.audit_events RENAME CONSTRAINT audit_events_subject_length TO audit_events_target_length;
ALTER TABLE frontdesk.audit_events
  -- The verified actor: its account (0 for services and anonymous callers),
  -- role name ('' when there was no verified caller, e.g. a failed login),
  -- reseller path ("1.5.9."; '' for non-resellers) so a reseller can read
  -- the events of its subtree, the API key it used (0: none), and the tenant
  -- its credential belongs to (0: the platform or a service).
  ADD COLUMN actor_tenant_id  bigint  NOT NULL DEFAULT 0,
  ADD COLUMN actor_account_id bigint  NOT NULL DEFAULT 0,
  ADD COLUMN actor_role       text    NOT NULL DEFAULT '',
  ADD COLUMN actor_path       text    NOT NULL DEFAULT '',
  ADD COLUMN actor_key_id     bigint  NOT NULL DEFAULT 0,
  ADD COLUMN source           text    NOT NULL DEFAULT '',   -- client address, no port
  ADD COLUMN outcome          text    NOT NULL DEFAULT 'ok',
  -- A row that stands for several like events (failed logins past the
  -- limit: one row per window): how many, and when the last one was.
  ADD COLUMN repeats          integer NOT NULL DEFAULT 1,
  ADD COLUMN last_at          timestamptz NOT NULL DEFAULT now(),
  ADD CONSTRAINT audit_events_outcome CHECK (outcome IN ('ok', 'failed', 'refused', 'limited')),
  ADD CONSTRAINT audit_events_role CHECK (actor_role IN ('', 'platform_admin', 'tenant_admin', 'reseller', 'service')),
  ADD CONSTRAINT audit_events_path_length CHECK (char_length(actor_path) <= 400),
  ADD CONSTRAINT audit_events_source_length CHECK (char_length(source) <= 64),
  ADD CONSTRAINT audit_events_repeats CHECK (repeats >= 1);

-- Reads page newest first by id, within a tenant, by actor subtree, target
-- or action.
DROP INDEX frontdesk.audit_events_tenant_at;
CREATE INDEX audit_events_path ON frontdesk.audit_events (tenant_id, actor_path text_pattern_ops, id);
CREATE INDEX audit_events_target ON frontdesk.audit_events (tenant_id, target, id);
CREATE INDEX audit_events_action ON frontdesk.audit_events (tenant_id, action, id);
CREATE INDEX audit_events_actor ON frontdesk.audit_events (tenant_id, actor_account_id, id);
CREATE INDEX audit_events_at ON frontdesk.audit_events (tenant_id, at);

-- Append-only, whoever asks (owner and superusers included, short of a
-- migration dropping the trigger). The one exception: authd may count one
-- more repeat of a 'login.rate_limited' row (failed logins past the limit
-- are one row per window, not one each): repeats may grow by one, only
-- last_at may move forward, nothing else may change. The role is compared by
-- name: authd connects as frontdesk_authd itself (a member role would be refused).
CREATE FUNCTION frontdesk.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND current_user = 'frontdesk_authd'
     AND OLD.action = 'login.rate_limited'
     AND NEW.repeats = OLD.repeats + 1 AND NEW.last_at >= OLD.last_at
     AND (NEW.tenant_id, NEW.id, NEW.at, NEW.actor, NEW.action, NEW.target, NEW.detail,
          NEW.actor_tenant_id, NEW.actor_account_id, NEW.actor_role, NEW.actor_path,
          NEW.actor_key_id, NEW.source, NEW.outcome)
         IS NOT DISTINCT FROM
         (OLD.tenant_id, OLD.id, OLD.at, OLD.actor, OLD.action, OLD.target, OLD.detail,
          OLD.actor_tenant_id, OLD.actor_account_id, OLD.actor_role, OLD.actor_path,
          OLD.actor_key_id, OLD.source, OLD.outcome) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'frontdesk.audit_events is append-only: % refused', TG_OP
    USING ERRCODE = '42501';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON frontdesk.audit_events
  FOR EACH ROW EXECUTE FUNCTION frontdesk.refuse_audit_change();
DO $$
BEGIN
  FOR i IN 0 .. 7 LOOP
    EXECUTE format('CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON frontdesk.%I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION frontdesk.refuse_audit_change()',
                   'audit_events_p' || i);
  END LOOP;
END
$$;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON frontdesk.audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION frontdesk.refuse_audit_change();

GRANT UPDATE (repeats, last_at) ON frontdesk.audit_events TO frontdesk_authd;
