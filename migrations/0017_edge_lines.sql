-- 0017_edge_lines.sql - linesd for the HTTP edge (edged): GetLineChannels,
-- ReportSessions and WatchPlaybackEvents (api/frontdesk/v1/lines.proto).
--
-- - Category ids: categories are free text on streams; players remember
--   category ids, so every name a tenant's streams use gets an id of its own
--   (frontdesk.stream_categories), made by a trigger when a stream is
--   written with a name not seen before, and never changed or reused (a
--   name no stream uses any more keeps its row and id).
-- - Catalog version: one counter per tenant (frontdesk.catalog_versions),
--   bumped by a trigger on every change of streams, bouquets and packages,
--   in the changing transaction, once per transaction, and announced on
--   frontdesk_lines (type 101, the version in the session field).
-- - Suspensions, which authd writes: a trigger on frontdesk.tenants and one
--   on frontdesk.accounts announce a suspension on frontdesk_lines (types
--   102, 103) so that every linesd replica hears of it at once (the edge's
--   LINE_REVOKED, and the suspended lines' sessions end at once). They send
--   a NOTIFY and write nothing.
-- - frontdesk.authorize_playback: failed authorizations are counted per
--   source, which for IPv6 is the client's /64 (an attacker varies the low
--   64 bits for free; an IPv4-mapped address counts as its IPv4 address);
--   IPv4 keys are as before. The sessions it replaces are announced with
--   their end reason (the payload's last field).
-- - frontdesk.line_channels: a line's live channels in playlist order.
--
-- Payload of frontdesk_lines (0004_lines.sql): "<tenant> <type> <line>
-- <reseller> <session> <previous>". The last field now also carries, for
-- session.ended the end reason, for line.status_changed the new status
-- times 256 plus the previous one, for line.updated the line's status
-- times 256 plus what changed (1 password, 2 access); linesd reads both
-- forms (an old payload says 0 there).

-- ---------------------------------------------------------------------------
-- Category ids.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE frontdesk.stream_categories_id_seq AS bigint;
CREATE TABLE frontdesk.stream_categories (
  tenant_id  bigint NOT NULL,
  id         bigint NOT NULL DEFAULT nextval('frontdesk.stream_categories_id_seq'),
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT stream_categories_name_key UNIQUE (tenant_id, name),
  CONSTRAINT stream_categories_id CHECK (id > 0),
  CONSTRAINT stream_categories_name_length CHECK (char_length(name) BETWEEN 1 AND 100)
);
ALTER SEQUENCE frontdesk.stream_categories_id_seq OWNED BY frontdesk.stream_categories.id;
CALL frontdesk.enable_tenant_rls('frontdesk.stream_categories');
GRANT SELECT, INSERT ON frontdesk.stream_categories TO frontdesk_linesd;
GRANT USAGE ON SEQUENCE frontdesk.stream_categories_id_seq TO frontdesk_linesd;

-- The categories already in use, tenant by tenant (the owner obeys the
-- tenant wall too), numbered in the order of their first stream.
DO $$
DECLARE
  t bigint;
BEGIN
  FOR t IN SELECT id FROM frontdesk.tenants ORDER BY id LOOP
    PERFORM set_config('frontdesk.tenant_id', t::text, true);
    INSERT INTO frontdesk.stream_categories (tenant_id, name)
    SELECT t, category FROM frontdesk.streams
     WHERE tenant_id = t AND category <> ''
     GROUP BY category ORDER BY min(id);
  END LOOP;
  PERFORM set_config('frontdesk.tenant_id', '', true);
END
$$;

-- Runs as the writer (linesd), in its transaction and tenant.
CREATE FUNCTION frontdesk.stream_category() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO frontdesk.stream_categories (tenant_id, name) VALUES (NEW.tenant_id, NEW.category)
  ON CONFLICT (tenant_id, name) DO NOTHING;
  RETURN NULL;
END
$$;
CREATE TRIGGER streams_category_new AFTER INSERT ON frontdesk.streams
  FOR EACH ROW WHEN (NEW.category <> '') EXECUTE FUNCTION frontdesk.stream_category();
CREATE TRIGGER streams_category_changed AFTER UPDATE OF category ON frontdesk.streams
  FOR EACH ROW WHEN (NEW.category <> '' AND NEW.category IS DISTINCT FROM OLD.category)
  EXECUTE FUNCTION frontdesk.stream_category();

-- ---------------------------------------------------------------------------
-- Catalog versions. bumped_by is the transaction that last bumped it: the
-- rows a transaction changes after its first bump it once in all, and the
-- announcement is made once (pg_notify folds identical payloads of one
-- transaction, and the version is the same).
-- ---------------------------------------------------------------------------
CREATE TABLE frontdesk.catalog_versions (
  tenant_id  bigint NOT NULL PRIMARY KEY,
  version    bigint NOT NULL DEFAULT 0,
  bumped_by  xid8,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT catalog_versions_version CHECK (version >= 0)
);
CALL frontdesk.enable_tenant_rls('frontdesk.catalog_versions');
GRANT SELECT, INSERT, UPDATE ON frontdesk.catalog_versions TO frontdesk_linesd;

CREATE FUNCTION frontdesk.catalog_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
  t bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
  v bigint;
BEGIN
  INSERT INTO frontdesk.catalog_versions AS c (tenant_id, version, bumped_by)
  VALUES (t, 1, pg_current_xact_id())
  ON CONFLICT (tenant_id) DO UPDATE
     SET version = c.version + 1, bumped_by = EXCLUDED.bumped_by, updated_at = now()
   WHERE c.bumped_by IS DISTINCT FROM EXCLUDED.bumped_by
  RETURNING version INTO v;
  IF v IS NOT NULL THEN
    PERFORM frontdesk.line_event(t, 101, 0, 0, v, 0);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER streams_catalog_version AFTER INSERT OR UPDATE OR DELETE ON frontdesk.streams
  FOR EACH ROW EXECUTE FUNCTION frontdesk.catalog_changed();
CREATE TRIGGER bouquets_catalog_version AFTER INSERT OR UPDATE OR DELETE ON frontdesk.bouquets
  FOR EACH ROW EXECUTE FUNCTION frontdesk.catalog_changed();
CREATE TRIGGER packages_catalog_version AFTER INSERT OR UPDATE OR DELETE ON frontdesk.packages
  FOR EACH ROW EXECUTE FUNCTION frontdesk.catalog_changed();

-- ---------------------------------------------------------------------------
-- Suspensions, announced as they commit (authd's transactions). The
-- functions send a notification and nothing else.
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.tenant_suspended() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.id, 102, 0, 0, 0, 0));
  RETURN NULL;
END
$$;
CREATE TRIGGER tenants_suspended AFTER UPDATE OF status ON frontdesk.tenants
  FOR EACH ROW WHEN (NEW.status = 'suspended' AND OLD.status IS DISTINCT FROM NEW.status AND NEW.id > 0)
  EXECUTE FUNCTION frontdesk.tenant_suspended();

-- The account's id goes in the reseller field; its subtree is every line
-- whose reseller_path starts with the account's path.
CREATE FUNCTION frontdesk.account_suspended() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('frontdesk_lines', concat_ws(' ', NEW.tenant_id, 103, 0, NEW.id, 0, 0));
  RETURN NULL;
END
$$;
CREATE TRIGGER accounts_suspended AFTER UPDATE OF status ON frontdesk.accounts
  FOR EACH ROW WHEN (NEW.status = 'suspended' AND OLD.status IS DISTINCT FROM NEW.status AND NEW.tenant_id > 0)
  EXECUTE FUNCTION frontdesk.account_suspended();

-- ---------------------------------------------------------------------------
-- A line's live channels (GetLineChannels): the enabled live streams of its
-- bouquets, in the order of its bouquets and of each bouquet's streams, a
-- stream at its first place only; each with its category's id (0: none) and
-- whether it is the first channel of that category. STABLE: it reads at the
-- snapshot of the statement that calls it (the catalog version beside it
-- is of the same moment).
--
-- The plan is fixed by its shape, not left to estimates: a bouquet's
-- array holds up to 5,000 streams, which no statistic foresees (with a
-- freshly filled catalog the planner chose a nested loop of every stream
-- with every entry, a second for 5,000), so each entry's stream is found
-- by its key (a lateral lookup the planner cannot flatten: OFFSET 0), and
-- its category's id likewise.
-- ---------------------------------------------------------------------------
CREATE FUNCTION frontdesk.line_channels(p_tenant bigint, p_bouquets bigint[])
RETURNS TABLE (pos bigint, stream_id bigint, name text, number integer, logo_url text, epg_channel text,
               category_id bigint, category text, category_first boolean, added_at bigint)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog AS $$
  WITH e AS MATERIALIZED (
    SELECT x.sid, row_number() OVER (ORDER BY lb.o, x.o) AS pos
      FROM unnest(p_bouquets) WITH ORDINALITY lb(bid, o)
     CROSS JOIN LATERAL (SELECT b.stream_ids FROM frontdesk.bouquets b
                          WHERE b.tenant_id = p_tenant AND b.id = lb.bid OFFSET 0) b
     CROSS JOIN LATERAL unnest(b.stream_ids) WITH ORDINALITY x(sid, o)),
  f AS MATERIALIZED (SELECT sid, min(pos) AS pos FROM e GROUP BY sid),
  c AS MATERIALIZED (
    SELECT f.pos, s.id, s.name, s.number, s.logo_url, s.epg_channel, s.category,
           coalesce((SELECT k.id FROM frontdesk.stream_categories k
                      WHERE k.tenant_id = p_tenant AND k.name = s.category AND s.category <> ''), 0) AS category_id,
           floor(extract(epoch FROM s.created_at))::bigint AS added_at
      FROM f
     CROSS JOIN LATERAL (SELECT * FROM frontdesk.streams s
                          WHERE s.tenant_id = p_tenant AND s.id = f.sid OFFSET 0) s
     WHERE s.kind = 1 AND NOT s.disabled)
  SELECT pos, id, name, number, logo_url, epg_channel, category_id, category,
         row_number() OVER (PARTITION BY category_id ORDER BY pos) = 1, added_at
    FROM c ORDER BY pos
$$;
REVOKE ALL ON FUNCTION frontdesk.line_channels(bigint, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION frontdesk.line_channels(bigint, bigint[]) TO frontdesk_linesd;

-- ---------------------------------------------------------------------------
-- frontdesk.authorize_playback (0007_zapping.sql's, with the failure keys
-- of the client's source and the replaced sessions' end reason announced).
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
