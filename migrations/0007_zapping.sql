-- 0007_zapping.sql - channel zapping on a full line (issue 12, item 1), in
-- frontdesk.authorize_playback (0004_lines.sql has the rest of its story):
--
-- - A player switching channels opens the new stream before it closes the
--   old one, so on a line at its limit the old session held the slot until
--   it timed out and the new stream was refused MAX_CONNECTIONS. Now the
--   same client (the same client IP and user agent, or the same client
--   session key) opening another stream on a line at its limit replaces its
--   own previous session (REPLACED, announced like every end), under both
--   policies; another client is still refused (REFUSE_NEW) or replaces the
--   oldest session (END_OLDEST). Exact across replicas as before: all of it
--   runs under the line's advisory lock.
-- - A session reused through the client session key on another stream
--   keeps its id and now plays that stream (it kept its first stream_id).
--
-- The hot path is unchanged: a new session on a line below its limit costs
-- the same statements as before (the at-limit branch alone reads more), in
-- the same one call with generic plans; the signature, the decision type
-- and the outcomes are the same, so grants and callers stay as they are.

CREATE OR REPLACE FUNCTION frontdesk.authorize_playback(
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
    -- Room is made by ending sessions (SESSION_END_REASON_REPLACED = 4),
    -- as many as it takes to leave max_connections - 1: first this
    -- client's own (the same client IP and user agent on another stream: a
    -- player zapping opens the new stream before it closes the old one; the
    -- same client session key was reused above), oldest first, under
    -- either policy; then, under END_OLDEST only, anyone's, oldest first.
    -- Under REFUSE_NEW a newcomer the client's own sessions cannot make
    -- room for is refused and nothing ends.
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
    -- Always announced: every replica's heartbeat cache must drop them.
    PERFORM frontdesk.line_event(p_tenant, 6, l.id, l.reseller_id, r, 0) FROM unnest(v_ids) r;
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
