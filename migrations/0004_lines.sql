-- 0004_lines.sql - linesd: the catalog (streams, bouquets, packages), lines,
-- the charges made for them (an outbox), playback sessions and the failed-
-- authorization counters.
--
-- Output formats are stored as the API's OutputFormat numbers (smallint[]:
-- 1 ts, 2 m3u8, 3 rtmp); an empty list means all.

-- ---------------------------------------------------------------------------
-- The tenant's lines policy. No row = the defaults.
-- ---------------------------------------------------------------------------
CREATE TABLE frontdesk.lines_settings (
  tenant_id               bigint NOT NULL PRIMARY KEY,
  connection_limit_policy text NOT NULL DEFAULT 'refuse_new',
  trials_per_day          integer NOT NULL DEFAULT 10,
  updated_at              timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT lines_settings_policy CHECK (connection_limit_policy IN ('refuse_new', 'end_oldest')),
  CONSTRAINT lines_settings_trials CHECK (trials_per_day BETWEEN 0 AND 100000)
);
CALL frontdesk.enable_tenant_rls('frontdesk.lines_settings');
GRANT SELECT, INSERT, UPDATE ON frontdesk.lines_settings TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- Catalog. Stream ids are small integers numbered per tenant (players put
-- them in URLs); bouquets keep their streams in order as an array; packages
-- name their bouquets likewise. Rows are never deleted (disabled instead),
-- so the arrays need no foreign keys: linesd checks each id on write.
-- ---------------------------------------------------------------------------
CREATE TABLE frontdesk.streams (
  tenant_id   bigint NOT NULL,
  id          bigint NOT NULL,
  name        text NOT NULL,
  kind        smallint NOT NULL,
  category    text NOT NULL DEFAULT '',
  number      integer NOT NULL DEFAULT 0,
  logo_url    text NOT NULL DEFAULT '',
  epg_channel text NOT NULL DEFAULT '',
  disabled    boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT streams_id CHECK (id > 0),
  CONSTRAINT streams_kind CHECK (kind BETWEEN 1 AND 3),
  CONSTRAINT streams_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
  CONSTRAINT streams_category_length CHECK (char_length(category) <= 100),
  CONSTRAINT streams_number CHECK (number >= 0),
  CONSTRAINT streams_logo_length CHECK (char_length(logo_url) <= 1000),
  CONSTRAINT streams_epg_length CHECK (char_length(epg_channel) <= 200)
);
CALL frontdesk.enable_tenant_rls('frontdesk.streams');
CREATE INDEX streams_category ON frontdesk.streams (tenant_id, category, id);
GRANT SELECT, INSERT, UPDATE ON frontdesk.streams TO frontdesk_linesd;

CREATE TABLE frontdesk.bouquets (
  tenant_id  bigint NOT NULL,
  id         bigint GENERATED ALWAYS AS IDENTITY,
  name       text NOT NULL,
  stream_ids bigint[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT bouquets_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
  CONSTRAINT bouquets_streams CHECK (cardinality(stream_ids) <= 5000)
);
CALL frontdesk.enable_tenant_rls('frontdesk.bouquets');
GRANT SELECT, INSERT, UPDATE ON frontdesk.bouquets TO frontdesk_linesd;

CREATE TABLE frontdesk.packages (
  tenant_id          bigint NOT NULL,
  id                 bigint GENERATED ALWAYS AS IDENTITY,
  name               text NOT NULL,
  duration_days      integer NOT NULL DEFAULT 0,
  duration_hours     integer NOT NULL DEFAULT 0,
  credit_cost        bigint NOT NULL DEFAULT 0,
  max_connections    integer NOT NULL DEFAULT 1,
  bouquet_ids        bigint[] NOT NULL DEFAULT '{}',
  trial              boolean NOT NULL DEFAULT false,
  output_formats     smallint[] NOT NULL DEFAULT '{}',
  bandwidth_cap_kbps bigint NOT NULL DEFAULT 0,
  disabled           boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT packages_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
  CONSTRAINT packages_duration CHECK (duration_days BETWEEN 0 AND 3660 AND duration_hours BETWEEN 0 AND 23
                                      AND duration_days + duration_hours > 0),
  CONSTRAINT packages_cost CHECK (credit_cost >= 0),
  CONSTRAINT packages_connections CHECK (max_connections BETWEEN 1 AND 1000),
  CONSTRAINT packages_bouquets CHECK (cardinality(bouquet_ids) <= 1000),
  CONSTRAINT packages_bandwidth CHECK (bandwidth_cap_kbps >= 0)
);
CALL frontdesk.enable_tenant_rls('frontdesk.packages');
GRANT SELECT, INSERT, UPDATE ON frontdesk.packages TO frontdesk_linesd;

-- Idempotency of the catalog's creates: "<Method>/<actor>/<key>" -> the row made.
CREATE TABLE frontdesk.lines_idempotency (
  tenant_id    bigint NOT NULL,
  idem_key     text NOT NULL,
  request_hash bytea NOT NULL,
  result_id    bigint NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idem_key),
  CONSTRAINT lines_idempotency_key_length CHECK (octet_length(idem_key) <= 300)
);
CALL frontdesk.enable_tenant_rls('frontdesk.lines_idempotency');
GRANT SELECT, INSERT ON frontdesk.lines_idempotency TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- Lines. state is what was set ('pending' until its charge is settled, then
-- 'active', 'disabled' or 'banned'); EXPIRED is never stored: every read
-- derives it from expires_at, so a line expires everywhere at the second.
-- A pending line is invisible to every read and to authorization; it holds
-- its username while its charge is settled.
--
-- Password: password_box is crypto_secretbox(nonce || box) under a key only
-- linesd holds (portals show the password again); password_hash is a keyed
-- BLAKE2b of it, what authorization looks the line up by.
--
-- reseller_path is the owner's path in the reseller tree ("1.5.9."; paths
-- never change), so "lines of this subtree" is an index range.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE frontdesk.lines_id_seq AS bigint;
CREATE TABLE frontdesk.lines (
  tenant_id          bigint NOT NULL,
  id                 bigint NOT NULL DEFAULT nextval('frontdesk.lines_id_seq'),
  reseller_id        bigint NOT NULL,
  reseller_path      text NOT NULL,
  username           text NOT NULL,
  password_hash      bytea NOT NULL,
  password_box       bytea NOT NULL,
  package_id         bigint NOT NULL,
  state              text NOT NULL,
  expires_at         timestamptz NOT NULL,
  max_connections    integer NOT NULL,
  bouquet_ids        bigint[] NOT NULL DEFAULT '{}',
  allowed_ips        cidr[] NOT NULL DEFAULT '{}',
  allowed_user_agents text[] NOT NULL DEFAULT '{}',
  output_formats     smallint[] NOT NULL DEFAULT '{}',
  bandwidth_cap_kbps bigint NOT NULL DEFAULT 0,
  trial              boolean NOT NULL DEFAULT false,
  notes              text NOT NULL DEFAULT '',
  status_reason      text NOT NULL DEFAULT '',
  -- The expires_at whose line.expired was emitted (the expiry sweep).
  expiry_announced   timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT lines_username_key UNIQUE (tenant_id, username),
  CONSTRAINT lines_state CHECK (state IN ('pending', 'active', 'disabled', 'banned')),
  CONSTRAINT lines_username_length CHECK (char_length(username) BETWEEN 1 AND 64),
  CONSTRAINT lines_connections CHECK (max_connections BETWEEN 1 AND 1000),
  CONSTRAINT lines_lists CHECK (cardinality(bouquet_ids) <= 1000 AND cardinality(allowed_ips) <= 100
                                AND cardinality(allowed_user_agents) <= 100),
  CONSTRAINT lines_notes_length CHECK (char_length(notes) <= 2000),
  CONSTRAINT lines_bandwidth CHECK (bandwidth_cap_kbps >= 0)
) PARTITION BY HASH (tenant_id);
ALTER SEQUENCE frontdesk.lines_id_seq OWNED BY frontdesk.lines.id;
CALL frontdesk.create_hash_partitions('frontdesk.lines', 8);
CALL frontdesk.enable_tenant_rls('frontdesk.lines');
CREATE INDEX lines_path ON frontdesk.lines (tenant_id, reseller_path COLLATE "C", id);
CREATE INDEX lines_expires ON frontdesk.lines (tenant_id, expires_at);
-- Lines whose expiry the sweep has not announced yet (line.expired), by expiry.
CREATE INDEX lines_expiry_due ON frontdesk.lines (tenant_id, expires_at) WHERE expiry_announced IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.lines TO frontdesk_linesd;
GRANT USAGE ON SEQUENCE frontdesk.lines_id_seq TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- What each line was charged: the outbox that keeps linesd and billingd's
-- books together. A create or extend first commits a 'pending' row (and, for
-- a create, the pending line), then calls Charge with the idempotency key
-- "lc/<id>", then applies the line change and marks the row 'applied' in
-- one transaction. Whoever settles a row holds its row lock meanwhile; a
-- row left pending (linesd killed, billingd away) is settled again later by
-- the reconciliation pass or by a retry of the same request: Charge with the
-- same key answers the first charge, so nothing is charged twice. A charge
-- refused for good (not enough credits) removes the pending row and line.
-- Kept after the line is deleted: refunds and the trial count read it.
-- ---------------------------------------------------------------------------
CREATE TABLE frontdesk.line_charges (
  tenant_id       bigint NOT NULL,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  line_id         bigint NOT NULL,
  reseller_id     bigint NOT NULL,
  kind            text NOT NULL,
  trial           boolean NOT NULL DEFAULT false,
  package_id      bigint NOT NULL,
  periods         integer NOT NULL DEFAULT 1,
  amount          bigint NOT NULL,
  state           text NOT NULL DEFAULT 'pending',
  charge_entry_id bigint,
  balance_after   bigint,
  refunded        bigint NOT NULL DEFAULT 0,
  idem_key        text NOT NULL,
  request_hash    bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT line_charges_idem UNIQUE (tenant_id, idem_key),
  CONSTRAINT line_charges_kind CHECK (kind IN ('create', 'extend')),
  CONSTRAINT line_charges_state CHECK (state IN ('pending', 'applied')),
  CONSTRAINT line_charges_amount CHECK (amount >= 0 AND refunded BETWEEN 0 AND amount),
  CONSTRAINT line_charges_periods CHECK (periods BETWEEN 1 AND 120),
  CONSTRAINT line_charges_idem_length CHECK (octet_length(idem_key) <= 300)
);
CALL frontdesk.enable_tenant_rls('frontdesk.line_charges');
CREATE INDEX line_charges_pending ON frontdesk.line_charges (tenant_id, created_at) WHERE state = 'pending';
CREATE INDEX line_charges_line ON frontdesk.line_charges (tenant_id, line_id, id);
CREATE INDEX line_charges_trials ON frontdesk.line_charges (tenant_id, reseller_id, created_at) WHERE trial;
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.line_charges TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- Playback sessions. Live = ended_at IS NULL and seen within the session
-- timeout (a session past it reads as ended before the sweep marks it).
-- Written with synchronous_commit = off (linesd sets it per transaction): a
-- PostgreSQL crash may lose the last fraction of a second of session starts,
-- ends and heartbeats, never a line or a credit. Ended rows are kept an hour.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE frontdesk.sessions_id_seq AS bigint CACHE 32;
CREATE TABLE frontdesk.sessions (
  tenant_id     bigint NOT NULL,
  id            bigint NOT NULL DEFAULT nextval('frontdesk.sessions_id_seq'),
  line_id       bigint NOT NULL,
  stream_id     bigint NOT NULL,
  node_id       bigint NOT NULL DEFAULT 0,
  client_ip     inet NOT NULL,
  user_agent    text NOT NULL,
  output_format smallint NOT NULL DEFAULT 0,
  client_key    text NOT NULL DEFAULT '',
  started_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  ended_at      timestamptz,
  end_reason    smallint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT sessions_ua_length CHECK (char_length(user_agent) <= 512),
  CONSTRAINT sessions_key_length CHECK (char_length(client_key) <= 128)
) PARTITION BY HASH (tenant_id);
ALTER SEQUENCE frontdesk.sessions_id_seq OWNED BY frontdesk.sessions.id;
CALL frontdesk.create_hash_partitions('frontdesk.sessions', 8);
CALL frontdesk.enable_tenant_rls('frontdesk.sessions');
-- A line's sessions, live and recently ended (its connection count, its last seen).
CREATE INDEX sessions_line ON frontdesk.sessions (tenant_id, line_id);
CREATE INDEX sessions_ended ON frontdesk.sessions (tenant_id, ended_at) WHERE ended_at IS NOT NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.sessions TO frontdesk_linesd;
GRANT USAGE ON SEQUENCE frontdesk.sessions_id_seq TO frontdesk_linesd;

-- Failed playback authorizations in the current window, per
-- 'u:<username>|<client ip>' and per 'a:<client ip>'.
CREATE TABLE frontdesk.playback_failures (
  tenant_id    bigint NOT NULL,
  key          text NOT NULL,
  window_start timestamptz NOT NULL DEFAULT now(),
  failures     integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, key)
);
CALL frontdesk.enable_tenant_rls('frontdesk.playback_failures');
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.playback_failures TO frontdesk_linesd;

-- linesd replicas with WatchLineEvents callers of a tenant: session events
-- are published (NOTIFY) only while somebody watches.
CREATE TABLE frontdesk.line_watchers (
  tenant_id  bigint NOT NULL,
  replica    text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, replica)
);
CALL frontdesk.enable_tenant_rls('frontdesk.line_watchers');
GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.line_watchers TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- Events: NOTIFY frontdesk_lines, payload "<tenant> <type> <line> <reseller>
-- <session> <previous status>" (types and statuses as the API numbers them).
-- Delivered at commit, in commit order, to every linesd replica; each builds
-- the LineEvent for its own watchers.
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.line_event(p_tenant bigint, p_type integer, p_line bigint, p_reseller bigint,
                                     p_session bigint, p_previous integer) RETURNS void
LANGUAGE sql SET search_path = pg_catalog AS $$
  SELECT pg_notify('frontdesk_lines', concat_ws(' ', p_tenant, p_type, p_line, p_reseller, p_session, p_previous))
$$;
GRANT EXECUTE ON FUNCTION frontdesk.line_event(bigint, integer, bigint, bigint, bigint, integer) TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- AuthorizePlayback's database work, one call = one round trip: the failure
-- limits, the credentials, every rule of the line, and for a stream the
-- session under the line's connection limit.
--
-- Exactness across replicas: the session is opened under a transaction-level
-- advisory lock on the line id (lines ids are unique across tenants), so the
-- count of live sessions and the insert happen one authorization at a time
-- per line, whichever replica runs them. An advisory lock writes nothing
-- (a row lock on the line would dirty its page and WAL on every start).
--
-- outcome: 'allowed' or the denial reason's name in lower case.
-- ---------------------------------------------------------------------------
CREATE TYPE frontdesk.playback_decision AS (
  outcome        text,
  retry_after    integer,
  line_id        bigint,
  session_id     bigint,
  reused         boolean,
  replaced_id    bigint,
  replaced_node  bigint,
  live           integer,     -- the line's live sessions after a session opened
  line           frontdesk.lines  -- the line, when the credentials were right
);

CREATE FUNCTION frontdesk.authorize_playback(
  p_tenant bigint, p_username text, p_password_hash bytea, p_stream bigint, p_ip inet, p_ua text,
  p_format smallint, p_node bigint, p_client_key text, p_tenant_active boolean, p_suspended text[],
  p_session_timeout integer, p_fail_window integer, p_fail_max_user integer, p_fail_max_ip integer,
  p_policy_end_oldest boolean, p_announce boolean)
RETURNS frontdesk.playback_decision
-- Generic plans: with custom ones (what the plan cache kept choosing, since
-- a plan pruned to one hash partition looks cheaper than the generic plan
-- over all eight) every statement was planned again on every call, which
-- cost 2.5-3x the CPU per authorization (pgbench: 2,490 vs 7,584 calls/s).
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  d        frontdesk.playback_decision;
  l        frontdesk.lines;
  k_user   text := 'u:' || p_username || '|' || host(p_ip);
  k_ip     text := 'a:' || host(p_ip);
  f        record;
  v_live   integer;
  v_old    record;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  d.reused := false;
  d.replaced_id := 0;
  d.replaced_node := 0;
  d.session_id := 0;
  d.line_id := 0;
  d.retry_after := 0;

  -- Limits on failures: a client past either limit is not even checked.
  -- Attempts of one (username, client) take turns (an advisory lock, in the
  -- two-key space, apart from the line locks), so parallel guesses are
  -- counted one by one, the first of a window included; the per-address
  -- counter is locked when it exists.
  PERFORM pg_advisory_xact_lock(hashtext('pbf:' || p_tenant), hashtext(k_user));
  FOR f IN SELECT key, failures, window_start FROM frontdesk.playback_failures
            WHERE tenant_id = p_tenant AND key IN (k_user, k_ip)
              AND window_start > now() - make_interval(secs => p_fail_window)
            FOR UPDATE LOOP
    IF (f.key = k_user AND f.failures >= p_fail_max_user) OR (f.key = k_ip AND f.failures >= p_fail_max_ip) THEN
      d.outcome := 'rate_limited';
      d.retry_after := greatest(1, ceil(extract(epoch FROM f.window_start + make_interval(secs => p_fail_window) - now())))::integer;
      RETURN d;
    END IF;
  END LOOP;

  SELECT * INTO l FROM frontdesk.lines
   WHERE tenant_id = p_tenant AND username = p_username AND password_hash = p_password_hash
     AND state <> 'pending';
  IF NOT FOUND THEN
    INSERT INTO frontdesk.playback_failures AS pf (tenant_id, key, failures)
    VALUES (p_tenant, k_user, 1), (p_tenant, k_ip, 1)
    ON CONFLICT (tenant_id, key) DO UPDATE
       SET failures = CASE WHEN pf.window_start > now() - make_interval(secs => p_fail_window)
                           THEN pf.failures + 1 ELSE 1 END,
           window_start = CASE WHEN pf.window_start > now() - make_interval(secs => p_fail_window)
                               THEN pf.window_start ELSE now() END;
    d.outcome := 'bad_credentials';
    RETURN d;
  END IF;
  d.line_id := l.id;
  d.line := l;

  IF l.state = 'banned' THEN d.outcome := 'banned'; RETURN d; END IF;
  IF l.state = 'disabled' THEN d.outcome := 'disabled'; RETURN d; END IF;
  IF NOT p_tenant_active THEN d.outcome := 'tenant_suspended'; RETURN d; END IF;
  -- p_suspended: the paths of the tenant's suspended accounts as LIKE
  -- prefixes ('1.5.%'), which linesd keeps (read at most a second ago).
  IF l.reseller_path LIKE ANY (p_suspended) THEN
    d.outcome := 'reseller_suspended'; RETURN d;
  END IF;
  IF l.expires_at <= now() THEN d.outcome := 'expired'; RETURN d; END IF;
  IF cardinality(l.allowed_ips) > 0
     AND NOT EXISTS (SELECT 1 FROM unnest(l.allowed_ips) c WHERE p_ip <<= c) THEN
    d.outcome := 'ip_not_allowed'; RETURN d;
  END IF;
  IF cardinality(l.allowed_user_agents) > 0 AND NOT (p_ua = ANY (l.allowed_user_agents)) THEN
    d.outcome := 'ua_not_allowed'; RETURN d;
  END IF;
  IF p_format <> 0 AND cardinality(l.output_formats) > 0 AND NOT (p_format = ANY (l.output_formats)) THEN
    d.outcome := 'format_not_allowed'; RETURN d;
  END IF;
  IF p_stream = 0 THEN
    d.outcome := 'allowed';       -- a check of the line only: no session
    RETURN d;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM frontdesk.streams s
                  WHERE s.tenant_id = p_tenant AND s.id = p_stream AND NOT s.disabled
                    AND EXISTS (SELECT 1 FROM frontdesk.bouquets b
                                 WHERE b.tenant_id = p_tenant AND b.id = ANY (l.bouquet_ids)
                                   AND p_stream = ANY (b.stream_ids))) THEN
    d.outcome := 'stream_not_in_package'; RETURN d;
  END IF;

  -- The connection limit, one authorization of this line at a time.
  PERFORM pg_advisory_xact_lock(l.id);
  SELECT s.id INTO d.session_id FROM frontdesk.sessions s
   WHERE s.tenant_id = p_tenant AND s.line_id = l.id AND s.ended_at IS NULL
     AND s.last_seen_at > now() - make_interval(secs => p_session_timeout)
     AND ((p_client_key <> '' AND s.client_key = p_client_key)
          OR (s.stream_id = p_stream AND s.client_ip = p_ip AND s.user_agent = p_ua))
   ORDER BY s.id DESC LIMIT 1;
  IF FOUND THEN
    UPDATE frontdesk.sessions SET last_seen_at = now(),
           node_id = CASE WHEN p_node <> 0 THEN p_node ELSE node_id END
     WHERE tenant_id = p_tenant AND id = d.session_id;
    d.reused := true;
    d.outcome := 'allowed';
    RETURN d;            -- live left NULL: counted by the caller's query
  END IF;
  SELECT count(*) INTO v_live FROM frontdesk.sessions s
   WHERE s.tenant_id = p_tenant AND s.line_id = l.id AND s.ended_at IS NULL
     AND s.last_seen_at > now() - make_interval(secs => p_session_timeout);
  IF v_live >= l.max_connections THEN
    IF NOT p_policy_end_oldest THEN
      d.outcome := 'max_connections'; RETURN d;
    END IF;
    -- End the oldest live sessions to make room for this one (SESSION_END_REASON_REPLACED = 4).
    FOR v_old IN SELECT s.id, s.node_id FROM frontdesk.sessions s
                  WHERE s.tenant_id = p_tenant AND s.line_id = l.id AND s.ended_at IS NULL
                    AND s.last_seen_at > now() - make_interval(secs => p_session_timeout)
                  ORDER BY s.started_at, s.id LIMIT v_live - l.max_connections + 1 LOOP
      UPDATE frontdesk.sessions SET ended_at = now(), end_reason = 4
       WHERE tenant_id = p_tenant AND id = v_old.id;
      d.replaced_id := v_old.id;
      d.replaced_node := v_old.node_id;
      PERFORM frontdesk.line_event(p_tenant, 6, l.id, l.reseller_id, v_old.id, 0);
    END LOOP;
  END IF;
  INSERT INTO frontdesk.sessions (tenant_id, line_id, stream_id, node_id, client_ip, user_agent,
                                  output_format, client_key)
  VALUES (p_tenant, l.id, p_stream, p_node, p_ip, p_ua, p_format, p_client_key)
  RETURNING id INTO d.session_id;
  d.live := least(v_live, l.max_connections - 1) + 1;
  IF p_announce THEN
    PERFORM frontdesk.line_event(p_tenant, 5, l.id, l.reseller_id, d.session_id, 0);
  END IF;
  d.outcome := 'allowed';
  RETURN d;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.authorize_playback(bigint, text, bytea, bigint, inet, text, smallint, bigint,
  text, boolean, text[], integer, integer, integer, integer, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.authorize_playback(bigint, text, bytea, bigint, inet, text, smallint, bigint,
  text, boolean, text[], integer, integer, integer, integer, boolean, boolean) TO frontdesk_linesd;
