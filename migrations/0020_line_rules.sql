-- 0020_line_rules.sql - what linesd keeps in memory to authorize playback at
-- kickoff speed (services/linesd/rules.c), and the statement left on the hot
-- path.
--
-- - lines.rev: a line's rules version, bumped by a trigger whenever a column
--   an authorization reads (or the line's message shows) changes, whoever
--   writes it. frontdesk.open_session refuses a rev other than the one
--   linesd holds (and a line past its expiry), so a line rule held in
--   memory is never trusted past its change by a statement. A changed or
--   deleted line is also announced (104, with its rev and its username):
--   a session the same client reopens is answered from memory (no
--   statement at all) only while no such notice came for its line since the
--   database last confirmed it.
-- - Announcements linesd's tenant cache needs besides the suspensions of
--   0017_edge_lines.sql: a tenant or an account made active again (105,
--   106), the tenant's lines settings (107), and every failed-authorization
--   counter written (108: the window's start and the count, the key last)
--   so that every replica knows at once who is over the limit.
-- - frontdesk.open_session: for a line whose rules linesd has checked in
--   memory, only the connection limit's lock, one look at the line's live
--   sessions (reuse and count in one scan), the stream's check when linesd
--   cannot make it, the insert.
--
-- Payload of frontdesk_lines: "<tenant> <type> <line> <reseller> <session>
-- <last>" (0004_lines.sql); types 104 and 108 append " <key>".

ALTER TABLE frontdesk.lines ADD COLUMN rev bigint NOT NULL DEFAULT 0;

CREATE FUNCTION frontdesk.line_rev() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF (NEW.tenant_id, NEW.id, NEW.reseller_id, NEW.reseller_path, NEW.username, NEW.password_hash,
      NEW.package_id, NEW.state, NEW.expires_at, NEW.max_connections, NEW.bouquet_ids, NEW.allowed_ips,
      NEW.allowed_user_agents, NEW.output_formats, NEW.bandwidth_cap_kbps, NEW.trial, NEW.notes)
     IS DISTINCT FROM
     (OLD.tenant_id, OLD.id, OLD.reseller_id, OLD.reseller_path, OLD.username, OLD.password_hash,
      OLD.package_id, OLD.state, OLD.expires_at, OLD.max_connections, OLD.bouquet_ids, OLD.allowed_ips,
      OLD.allowed_user_agents, OLD.output_formats, OLD.bandwidth_cap_kbps, OLD.trial, OLD.notes) THEN
    NEW.rev := OLD.rev + 1;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER lines_rev BEFORE UPDATE ON frontdesk.lines
  FOR EACH ROW EXECUTE FUNCTION frontdesk.line_rev();

-- A line's rules changed (its new rev in the session field) or it was
-- deleted (-1): 104, the username it was held under as the key.
CREATE FUNCTION frontdesk.line_rev_announced() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', OLD.tenant_id, 104, OLD.id, 0,
                    CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE NEW.rev END, 0, OLD.username));
  RETURN NULL;
END
$$;
CREATE TRIGGER lines_rev_announced AFTER UPDATE ON frontdesk.lines
  FOR EACH ROW WHEN (OLD.rev IS DISTINCT FROM NEW.rev) EXECUTE FUNCTION frontdesk.line_rev_announced();
CREATE TRIGGER lines_deleted_announced AFTER DELETE ON frontdesk.lines
  FOR EACH ROW EXECUTE FUNCTION frontdesk.line_rev_announced();

-- Made active again (the suspensions themselves: 0017_edge_lines.sql).
CREATE FUNCTION frontdesk.tenant_reactivated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.id, 105, 0, 0, 0, 0));
  RETURN NULL;
END
$$;
CREATE TRIGGER tenants_reactivated AFTER UPDATE OF status ON frontdesk.tenants
  FOR EACH ROW WHEN (OLD.status = 'suspended' AND NEW.status <> 'suspended' AND NEW.id > 0)
  EXECUTE FUNCTION frontdesk.tenant_reactivated();

CREATE FUNCTION frontdesk.account_reactivated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.tenant_id, 106, 0, NEW.id, 0, 0));
  RETURN NULL;
END
$$;
CREATE TRIGGER accounts_reactivated AFTER UPDATE OF status ON frontdesk.accounts
  FOR EACH ROW WHEN (OLD.status = 'suspended' AND NEW.status <> 'suspended' AND NEW.tenant_id > 0)
  EXECUTE FUNCTION frontdesk.account_reactivated();

CREATE FUNCTION frontdesk.lines_settings_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.tenant_id, 107, 0, 0, 0, 0));
  RETURN NULL;
END
$$;
CREATE TRIGGER lines_settings_changed AFTER INSERT OR UPDATE ON frontdesk.lines_settings
  FOR EACH ROW EXECUTE FUNCTION frontdesk.lines_settings_changed();

-- Every failure counter written (failures are the slow path): the window's
-- start (epoch seconds, rounded up: linesd keeps a block until that start
-- plus the window, never less than PostgreSQL does; a block kept a moment
-- longer only sends the call to authorize_playback) in the session field, the count last, then the key
-- ('u:<username>|<source>' or 'a:<source>', 0017_edge_lines.sql).
CREATE FUNCTION frontdesk.playback_failure_counted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.tenant_id, 108, 0, 0,
                    ceil(extract(epoch FROM NEW.window_start))::bigint, NEW.failures, NEW.key));
  RETURN NULL;
END
$$;
CREATE TRIGGER playback_failures_counted AFTER INSERT OR UPDATE ON frontdesk.playback_failures
  FOR EACH ROW EXECUTE FUNCTION frontdesk.playback_failure_counted();

-- ---------------------------------------------------------------------------
-- frontdesk.open_session: a new or reopened session of a line whose rules
-- (credentials, status, suspensions, expiry, locks, and the stream when
-- p_check_stream is false) linesd has checked against its copy of rev
-- p_rev. Outcomes as authorize_playback's, plus 'stale': the line is not at
-- p_rev any more (changed or deleted) or has expired: nothing is written, and linesd asks
-- authorize_playback. The connection limit and zapping are exactly
-- authorize_playback's (0007_zapping.sql, 0017_edge_lines.sql), under the
-- same advisory lock on the line.
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.open_session(
  p_tenant bigint, p_line bigint, p_rev bigint, p_reseller bigint, p_max integer, p_bouquets bigint[],
  p_check_stream boolean, p_stream bigint, p_ip inet, p_ua text, p_format smallint, p_node bigint,
  p_client_key text, p_session_timeout integer, p_policy_end_oldest boolean, p_announce boolean)
RETURNS frontdesk.playback_decision
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  d       frontdesk.playback_decision;
  v_live  integer;
  v_reuse bigint;
  v_ids   bigint[];
  v_nodes bigint[];
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  d.reused := false;
  d.replaced_id := 0;
  d.replaced_node := 0;
  d.session_id := 0;
  d.line_id := p_line;
  d.retry_after := 0;
  IF p_check_stream AND NOT EXISTS (
       SELECT 1 FROM frontdesk.streams s
        WHERE s.tenant_id = p_tenant AND s.id = p_stream AND NOT s.disabled
          AND EXISTS (SELECT 1 FROM frontdesk.bouquets b
                       WHERE b.tenant_id = p_tenant AND b.id = ANY (p_bouquets)
                         AND p_stream = ANY (b.stream_ids))) THEN
    d.outcome := 'stream_not_in_package'; RETURN d;
  END IF;

  PERFORM pg_advisory_xact_lock(p_line);
  PERFORM 1 FROM frontdesk.lines l
   WHERE l.tenant_id = p_tenant AND l.id = p_line AND l.rev = p_rev AND l.expires_at > now();
  IF NOT FOUND THEN
    d.outcome := 'stale'; RETURN d;
  END IF;
  -- The line's live sessions, once: how many, and the one this client
  -- reopens (its client session key, or the same stream, address and player).
  SELECT count(*),
         max(s.id) FILTER (WHERE (p_client_key <> '' AND s.client_key = p_client_key)
                              OR (s.stream_id = p_stream AND s.client_ip = p_ip AND s.user_agent = p_ua))
    INTO v_live, v_reuse
    FROM frontdesk.sessions s
   WHERE s.tenant_id = p_tenant AND s.line_id = p_line AND s.ended_at IS NULL
     AND s.last_seen_at > now() - make_interval(secs => p_session_timeout);
  IF v_reuse IS NOT NULL THEN
    UPDATE frontdesk.sessions SET last_seen_at = now(), stream_id = p_stream,
           node_id = CASE WHEN p_node <> 0 THEN p_node ELSE node_id END
     WHERE tenant_id = p_tenant AND id = v_reuse;
    d.session_id := v_reuse;
    d.reused := true;
    d.live := v_live;
    d.outcome := 'allowed';
    RETURN d;
  END IF;
  IF v_live >= p_max THEN
    SELECT array_agg(x.id ORDER BY x.n), array_agg(x.node_id ORDER BY x.n) INTO v_ids, v_nodes
      FROM (SELECT s.id, s.node_id,
                   row_number() OVER (ORDER BY s.client_ip = p_ip AND s.user_agent = p_ua DESC,
                                      s.started_at, s.id) AS n
              FROM frontdesk.sessions s
             WHERE s.tenant_id = p_tenant AND s.line_id = p_line AND s.ended_at IS NULL
               AND s.last_seen_at > now() - make_interval(secs => p_session_timeout)
               AND (p_policy_end_oldest OR (s.client_ip = p_ip AND s.user_agent = p_ua))) x
     WHERE x.n <= v_live - p_max + 1;
    IF coalesce(cardinality(v_ids), 0) < v_live - p_max + 1 THEN
      d.outcome := 'max_connections'; RETURN d;
    END IF;
    UPDATE frontdesk.sessions SET ended_at = now(), end_reason = 4
     WHERE tenant_id = p_tenant AND id = ANY (v_ids);
    PERFORM frontdesk.line_event(p_tenant, 6, p_line, p_reseller, r, 4) FROM unnest(v_ids) r;
    d.replaced_id := v_ids[cardinality(v_ids)];
    d.replaced_node := v_nodes[cardinality(v_nodes)];
  END IF;
  INSERT INTO frontdesk.sessions (tenant_id, line_id, stream_id, node_id, client_ip, user_agent,
                                  output_format, client_key)
  VALUES (p_tenant, p_line, p_stream, p_node, p_ip, p_ua, p_format, p_client_key)
  RETURNING id INTO d.session_id;
  d.live := v_live - coalesce(cardinality(v_ids), 0) + 1;
  IF p_announce THEN
    PERFORM frontdesk.line_event(p_tenant, 5, p_line, p_reseller, d.session_id, 0);
  END IF;
  d.outcome := 'allowed';
  RETURN d;
END
$$;
REVOKE ALL ON FUNCTION frontdesk.open_session(bigint, bigint, bigint, bigint, integer, bigint[], boolean, bigint,
  inet, text, smallint, bigint, text, integer, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.open_session(bigint, bigint, bigint, bigint, integer, bigint[], boolean, bigint,
  inet, text, smallint, bigint, text, integer, boolean, boolean) TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- The line's changes and its authorizations, in one order. A change that
-- ends a line's sessions (password, ban, disable, expiry, delete) takes the
-- line's advisory lock, the one every authorization of it holds from its
-- connection-limit check to its commit (linesd's SQL_LOCK_LINE), so a
-- session opened just before the change is seen, and ended, by it.
-- frontdesk.open_session reads the line's rev under that lock already;
-- frontdesk.authorize_playback (0017_edge_lines.sql's, unchanged but for
-- this) reads the line before it, so it reads the rev again under the lock
-- and answers 'stale' when the line changed in between (linesd asks again).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION frontdesk.authorize_playback(
  p_tenant bigint, p_username text, p_password_hash bytea, p_stream bigint, p_ip inet, p_ua text,
  p_format smallint, p_node bigint, p_client_key text, p_tenant_active boolean, p_suspended text[],
  p_session_timeout integer, p_fail_window integer, p_fail_max_user integer, p_fail_max_ip integer,
  p_policy_end_oldest boolean, p_announce boolean)
RETURNS frontdesk.playback_decision
-- Generic plans: see 0004_lines.sql.
LANGUAGE plpgsql SET search_path = pg_catalog SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  d        frontdesk.playback_decision;
  l        frontdesk.lines;
  -- The source failures are counted by: an IPv4 address as it is (also
  -- when written IPv4-mapped, ::ffff:a.b.c.d); an IPv6 address's /64, the
  -- smallest block a client commonly holds, whose low 64 bits it chooses.
  v_source text := CASE WHEN family(p_ip) = 4 THEN host(p_ip)
                        WHEN p_ip <<= '::ffff:0.0.0.0/96'::inet
                          THEN host('0.0.0.0'::inet + (p_ip - '::ffff:0.0.0.0'::inet))
                        ELSE network(set_masklen(p_ip, 64))::text END;
  k_user   text := 'u:' || p_username || '|' || v_source;
  k_ip     text := 'a:' || v_source;
  f        record;
  v_live   integer;
  v_ids    bigint[];
  v_nodes  bigint[];
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  d.reused := false;
  d.replaced_id := 0;
  d.replaced_node := 0;
  d.session_id := 0;
  d.line_id := 0;
  d.retry_after := 0;

  -- Limits on failures: a client past either limit is not even checked.
  -- Attempts of one (username, source) take turns (an advisory lock, in the
  -- two-key space, apart from the line locks), so parallel guesses are
  -- counted one by one, the first of a window included; the per-source
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
  -- The line as read above may have changed before the lock was ours (a
  -- change holds it while it ends the line's sessions): read again.
  PERFORM 1 FROM frontdesk.lines x WHERE x.tenant_id = p_tenant AND x.id = l.id AND x.rev = l.rev;
  IF NOT FOUND THEN
    d.outcome := 'stale'; RETURN d;
  END IF;
  SELECT s.id INTO d.session_id FROM frontdesk.sessions s
   WHERE s.tenant_id = p_tenant AND s.line_id = l.id AND s.ended_at IS NULL
     AND s.last_seen_at > now() - make_interval(secs => p_session_timeout)
     AND ((p_client_key <> '' AND s.client_key = p_client_key)
          OR (s.stream_id = p_stream AND s.client_ip = p_ip AND s.user_agent = p_ua))
   ORDER BY s.id DESC LIMIT 1;
  IF FOUND THEN
    -- Reused through the client session key, the session may now play
    -- another stream: its stream follows (ListSessions, failover's Route).
    UPDATE frontdesk.sessions SET last_seen_at = now(), stream_id = p_stream,
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
    -- Room is made by ending sessions (SESSION_END_REASON_REPLACED = 4):
    -- see 0007_zapping.sql.
    SELECT array_agg(x.id ORDER BY x.n), array_agg(x.node_id ORDER BY x.n) INTO v_ids, v_nodes
      FROM (SELECT s.id, s.node_id,
                   row_number() OVER (ORDER BY s.client_ip = p_ip AND s.user_agent = p_ua DESC,
                                      s.started_at, s.id) AS n
              FROM frontdesk.sessions s
             WHERE s.tenant_id = p_tenant AND s.line_id = l.id AND s.ended_at IS NULL
               AND s.last_seen_at > now() - make_interval(secs => p_session_timeout)
               AND (p_policy_end_oldest OR (s.client_ip = p_ip AND s.user_agent = p_ua))) x
     WHERE x.n <= v_live - l.max_connections + 1;
    IF coalesce(cardinality(v_ids), 0) < v_live - l.max_connections + 1 THEN
      d.outcome := 'max_connections'; RETURN d;
    END IF;
    UPDATE frontdesk.sessions SET ended_at = now(), end_reason = 4
     WHERE tenant_id = p_tenant AND id = ANY (v_ids);
    -- Always announced, with the reason: every replica's heartbeat cache
    -- must drop them, and the edge stops serving them.
    PERFORM frontdesk.line_event(p_tenant, 6, l.id, l.reseller_id, r, 4) FROM unnest(v_ids) r;
    d.replaced_id := v_ids[cardinality(v_ids)];
    d.replaced_node := v_nodes[cardinality(v_nodes)];
  END IF;
  INSERT INTO frontdesk.sessions (tenant_id, line_id, stream_id, node_id, client_ip, user_agent,
                                  output_format, client_key)
  VALUES (p_tenant, l.id, p_stream, p_node, p_ip, p_ua, p_format, p_client_key)
  RETURNING id INTO d.session_id;
  d.live := v_live - coalesce(cardinality(v_ids), 0) + 1;
  IF p_announce THEN
    PERFORM frontdesk.line_event(p_tenant, 5, l.id, l.reseller_id, d.session_id, 0);
  END IF;
  d.outcome := 'allowed';
  RETURN d;
END
$$;
