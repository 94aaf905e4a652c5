"""The HTTP edge's hand-off to nginx HLS nodes and the nginx hook, end to end:
players log in (player_api.php), follow /live/U/P/ID.m3u8 through edged's
302 to a real nginx running the shipped docker/nginx/hls-node.conf, and
read live segments an ffmpeg source writes, every playlist and segment
checked by edged's /hook/nginx (services/edged/handoff.c, hooks.c, state.c).

What must hold:
- the 302 names the routed node, the token as the first path segment, and
  never the username or the password; >= 3 live segments are served and
  ffprobe reads the video through the node;
- the connection limit is applied at the redirect (a third player of a
  max-2 line is refused), END_OLDEST lets the third play and the first's
  next segment is refused, a player zapping channels on a full line keeps
  playing;
- a session lives as long as its node keeps asking (batched ReportSessions)
  and its slot frees when the node stops (FRONTDESK_SESSION_TIMEOUT);
- refused, with no segment served: expired line, banned line, wrong
  password and unknown user (one answer), tampered token, expired token
  (FRONTDESK_EDGED_TOKEN_TTL), the token replayed from another address
  (curl --interface 127.0.0.2), at another node, the hook without or with a
  wrong node secret, a kicked session (next segment 403 within 1 s);
- a node killed mid-stream (SIGKILL, heartbeats stop): the player coming back
  to the edge is sent to the other node (routerd's backup) and plays.

Processes: one Stack (authd, billingd, routerd, linesd, edged) for the file,
one ffmpeg HLS source (stream 1; streams 2 and 3 are symlinks to its
folder), two nginx nodes of the shared pool on loopback. Each test makes its
own tenant. The node kill is the last test."""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import fdedge
import fdstack
import fdtest
from fdstack import C, L, ikey, ns

REPORT_MS = 500
SESSION_TIMEOUT = 5
LINESD_ENV = {"FRONTDESK_SESSION_TIMEOUT": str(SESSION_TIMEOUT), "FRONTDESK_LINESD_SWEEP_MS": "250",
              "FRONTDESK_HEARTBEAT_FLUSH_MS": "200"}
ROUTERD_ENV = {"FRONTDESK_NODE_HEARTBEAT_MS": "200"}
EDGED_ENV = {"FRONTDESK_EDGED_REPORT_MS": str(REPORT_MS), "FRONTDESK_EDGED_HOSTS_REFRESH_MS": "100"}
KICK_WITHIN = 1.0
UA = "TestPlayer/1.0"


# ---------------------------------------------------------------------------
# Fixtures.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(routerd_replicas=1, routerd_env=ROUTERD_ENV, linesd_env=LINESD_ENV, edged_env=EDGED_ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for c in codes.values() if isinstance(c, int)), codes


@pytest.fixture(scope="module")
def hls():
    root = tempfile.mkdtemp(prefix="fdedge-hls-")
    os.chmod(root, 0o755)
    src = fdedge.HlsSource(root, 1).wait_ready(segments=2)
    for sid in (2, 3):
        os.symlink(src.dir, os.path.join(root, str(sid)))
    yield src
    src.stop()
    shutil.rmtree(root, ignore_errors=True)


def node_secret(p, node_id):
    env = dict(os.environ, FRONTDESK_EDGED_SIGNING_KEYS=p.edged_signing_keys)
    r = subprocess.run([fdtest.binary("edged"), "--node-secret", str(node_id)], env=env, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def nodes(p, hls):
    """Two nginx HLS nodes (shared pool), each registered with its M3U8 URL."""
    sim = fdedge.NodeSim(p, None, period=0.1)
    out = []
    try:
        for i in range(2):
            port = fdtest.free_port()
            node, _ = sim.add({fdedge.M3U8: f"http://127.0.0.1:{port}"}, name=f"hls-{i}-{fdstack.uniq('n')}")
            ng = fdedge.Nginx(fdedge.HLS_CONF, {"edged": p.edged.target, "node_id": node.id,
                                                "node_secret": node_secret(p, node.id), "root": hls.root,
                                                "port": port})
            out.append(ns(node=node, nginx=ng, url=ng.url, secret=node_secret(p, node.id)))
        yield ns(sim=sim, list=out)
    finally:
        for n in out:
            n.nginx.stop()
            n.nginx.cleanup()
        sim.close()


def shop(p, max_connections=2, policy=None):
    t = p.tenant()
    r = p.reseller(t, credits=10_000)
    cat = p.catalog(t, max_connections=max_connections)
    if policy:
        t.lines.UpdateLinesSettings(connection_limit_policy=policy)
    wait_brand(p, t)
    return ns(t=t, r=r, cat=cat)


def wait_brand(p, t):
    """Until edged knows the new tenant (it re-reads brands every 100 ms here)."""
    fdedge.wait_for(lambda: b"unknown tenant" not in fdedge.http_get(
        f"{edge_base(p)}/t/{t.slug}/live/x/y/1.m3u8").body, 5, f"edged serving /t/{t.slug}/")


def new_line(s):
    return s.r.lines.CreateLine(reseller_id=s.r.id, package_id=s.cat.package.id, idempotency_key=ikey()).line


def edge_base(p):
    """The edge on a platform host name ("localhost", FRONTDESK_PLATFORM_HOSTS)."""
    return p.edge_url.replace("127.0.0.1", "localhost")


def live_url(p, s, line, stream=1, ext="m3u8", user=None, password=None):
    return (f"{edge_base(p)}/t/{s.t.slug}/live/{user or line.username}/{password or line.password}/"
            f"{stream}.{ext}")


def handoff(url, ua=UA):
    return fdedge.http_get(url, follow=False, headers={"User-Agent": ua})


def play(url, n=1, ua=UA):
    """Hand-off (must be a 302), then n live segments from the node; returns
    ns(location, hls (fdedge.hls_segments' answer))."""
    h = handoff(url, ua)
    assert h.status == 302, (h.status, h.body)
    loc = h.headers["Location"]
    return ns(location=loc, hls=fdedge.hls_segments(loc, n))


def next_segment(playlist_url):
    """What a player gets next: (playlist status, status of its newest segment or None)."""
    pl = fdedge.http_get(playlist_url)
    if pl.status != 200:
        return pl.status, None
    entries = fdedge.playlist_entries(pl.body.decode())
    seg = fdedge.http_get(urllib.parse.urljoin(playlist_url, entries[-1]))
    return pl.status, seg.status


def refused_at_node(url):
    """The playlist and a segment at url's node/token: both refused."""
    pl = fdedge.http_get(url)
    seg = fdedge.http_get(urllib.parse.urljoin(url, "seg0.ts"))
    return pl.status, seg.status


def sessions_of(t, line):
    return [x for x in t.lines.ListSessions(line_id=line.id, page_size=100).sessions if x.ended_at == 0]


def token_of(location):
    return urllib.parse.urlsplit(location).path.split("/")[1]


def node_of(nodes, location):
    """The node (of the fixture's) a Location points at."""
    return next(n for n in nodes.list if location.startswith(n.url + "/"))


def hook(p, node, secret, uri, ip="127.0.0.1"):
    return fdedge.curl(f"{p.edge_url}/hook/nginx/{node.id}/{secret}", "-H", f"X-Original-URI: {uri}",
                       "-H", f"X-Real-IP: {ip}")


# ---------------------------------------------------------------------------
# Playing.
# ---------------------------------------------------------------------------

def test_login_then_play_hls(p, nodes):
    s = shop(p)
    line = new_line(s)
    login = fdedge.http_get(f"{edge_base(p)}/t/{s.t.slug}/player_api.php?username={line.username}"
                            f"&password={line.password}")
    assert login.status == 200, login.body
    import json
    info = json.loads(login.body)["user_info"]
    assert info["auth"] == 1 and info["status"] == "Active"

    got = play(live_url(p, s, line), n=3)
    loc = got.location
    assert any(loc.startswith(n.url + "/") for n in nodes.list), loc
    assert line.username not in loc and line.password not in loc
    parts = urllib.parse.urlsplit(loc).path.split("/")
    assert parts[2:] == ["1", "index.m3u8"] and len(parts[1]) == 122, parts
    assert got.hls.playlist_status == 200
    assert [x.status for x in got.hls.segments] == [200, 200, 200]
    assert all(x.size > 0 for x in got.hls.segments)
    probe = fdedge.ffprobe(loc)
    assert any(st["codec_type"] == "video" for st in probe["streams"]), probe
    # The session is the token's: one live session of the line.
    assert len(sessions_of(s.t, line)) == 1


def test_bare_path_and_bad_paths(p, nodes):
    s = shop(p)
    line = new_line(s)
    base = f"{edge_base(p)}/t/{s.t.slug}"
    # /U/P/ID is ts: nginx HLS nodes serve no ts, so no node can take it.
    r = handoff(f"{base}/{line.username}/{line.password}/1")
    assert r.status == 503 and r.headers.get("Retry-After"), (r.status, r.body)
    for path, status in ((f"/live/{line.username}/{line.password}/01.m3u8", 400),
                         (f"/live/{line.username}/{line.password}/x.m3u8", 400),
                         (f"/live/{line.username}/{line.password}/1.mp4", 404),
                         (f"/live/{line.username}/{line.password}/1", 404),
                         (f"/live/{line.username}/{line.password}/1.m3u8/x", 404),
                         (f"/movie/{line.username}/{line.password}/1.mp4", 404)):
        r = handoff(base + path)
        assert r.status == status, (path, r.status, r.body)
        assert "Location" not in r.headers


def test_connection_limit_at_redirect(p, nodes):
    s = shop(p, max_connections=2)
    line = new_line(s)
    url = live_url(p, s, line)
    a = play(url, ua="PlayerA/1")
    b = play(url, ua="PlayerB/1")
    assert a.hls.segments[0].status == 200 and b.hls.segments[0].status == 200
    c = handoff(url, ua="PlayerC/1")
    assert c.status == 403 and b"too many connections" in c.body, (c.status, c.body)
    assert "Location" not in c.headers
    # The same player coming back is the same session, not a third one.
    again = handoff(url, ua="PlayerA/1")
    assert again.status == 302
    assert len(sessions_of(s.t, line)) == 2


def test_end_oldest_refuses_the_first(p, nodes):
    s = shop(p, max_connections=2, policy=L.CONNECTION_LIMIT_POLICY_END_OLDEST)
    line = new_line(s)
    url = live_url(p, s, line)
    a = play(url, ua="PlayerA/1")
    time.sleep(0.05)
    b = play(url, ua="PlayerB/1")
    c = play(url, ua="PlayerC/1")
    assert c.hls.segments[0].status == 200
    deadline = time.monotonic() + KICK_WITHIN
    while next_segment(a.location)[0] != 403:
        assert time.monotonic() < deadline, "the oldest session still served"
        time.sleep(0.05)
    assert next_segment(b.location) == (200, 200)
    assert next_segment(c.location) == (200, 200)


def test_zapping_on_a_full_line(p, nodes):
    s = shop(p, max_connections=1)
    line = new_line(s)
    prev = None
    for stream in (1, 2, 3, 1):
        got = play(live_url(p, s, line, stream=stream), n=1)
        assert got.hls.playlist_status == 200 and got.hls.segments[0].status == 200, (stream, got.hls)
        if prev:
            # The replaced session's token is refused at once (well, within a second).
            deadline = time.monotonic() + KICK_WITHIN
            while next_segment(prev)[0] != 403:
                assert time.monotonic() < deadline, "the replaced session still served"
                time.sleep(0.05)
        prev = got.location
    assert len(sessions_of(s.t, line)) == 1


def test_session_lives_while_node_asks_and_frees_when_it_stops(p, nodes):
    s = shop(p, max_connections=1)
    line = new_line(s)
    url = live_url(p, s, line)
    a = play(url, ua="PlayerA/1")
    # Playing for longer than the session timeout: the reports keep it alive.
    until = time.monotonic() + SESSION_TIMEOUT + 2
    while time.monotonic() < until:
        assert next_segment(a.location) == (200, 200)
        time.sleep(0.5)
    assert handoff(url, ua="PlayerB/1").status == 403
    # Player A is killed: nothing asks for its session any more.
    stopped = time.monotonic()
    while handoff(url, ua="PlayerB/1").status != 302:
        assert time.monotonic() - stopped < SESSION_TIMEOUT + 5, "the killed player's slot never freed"
        time.sleep(0.25)
    assert time.monotonic() - stopped >= SESSION_TIMEOUT - 1.5
    # Its timed-out session is refused (the event, or the next report's answer).
    fdedge.wait_for(lambda: next_segment(a.location)[0] == 403, KICK_WITHIN + REPORT_MS / 1000,
                    "the timed-out session refused")


# ---------------------------------------------------------------------------
# Refusals: no segment served.
# ---------------------------------------------------------------------------

def test_refused_lines(p, nodes):
    s = shop(p)
    expired, banned, good = new_line(s), new_line(s), new_line(s)
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() - interval '1 minute' "
          f"WHERE tenant_id = {s.t.tenant} AND id = {expired.id}")
    s.r.lines.SetLineStatus(line_id=banned.id, status=L.LINE_STATUS_BANNED, reason="abuse")
    r = handoff(live_url(p, s, expired))
    assert (r.status, r.body) == (403, b"line expired\n")
    r = handoff(live_url(p, s, banned))
    assert (r.status, r.body) == (403, b"line banned\n")
    wrong = handoff(live_url(p, s, good, password="Wrong-pass-1"))
    unknown = handoff(live_url(p, s, good, user="nobody-here"))
    assert (wrong.status, wrong.body) == (403, b"invalid credentials\n")
    assert (unknown.status, unknown.body) == (wrong.status, wrong.body)
    for r in (wrong, unknown):
        assert "Location" not in r.headers
    assert sessions_of(s.t, expired) == [] and sessions_of(s.t, banned) == [] and sessions_of(s.t, good) == []


def test_refused_tokens(p, nodes, hls):
    s = shop(p)
    line = new_line(s)
    got = play(live_url(p, s, line))
    loc = got.location
    tok = token_of(loc)
    here = node_of(nodes, loc)
    other = next(n for n in nodes.list if n is not here)
    seg = hls.segments()[-1]
    assert next_segment(loc) == (200, 200)

    # Tampered: one character of the MAC or of the payload changed.
    for i in (5, len(tok) - 3):
        bad = tok[:i] + ("A" if tok[i] != "A" else "B") + tok[i + 1:]
        assert refused_at_node(loc.replace(tok, bad)) == (403, 403)
    # Another stream under the same token, and the ts shape of an m3u8 token.
    assert refused_at_node(loc.replace("/1/index.m3u8", "/2/index.m3u8")) == (403, 403)
    r = hook(p, here.node, here.secret, f"/{tok}/1.ts")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "format mismatch"
    # Replayed from another address (nginx sees 127.0.0.2).
    for path in ("index.m3u8", seg):
        r = fdedge.curl(urllib.parse.urljoin(loc, path), "--interface", "127.0.0.2")
        assert r.status == 403, (path, r.status)
    r = hook(p, here.node, here.secret, f"/{tok}/1/{seg}", ip="10.9.9.9")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "address mismatch"
    # At another node.
    assert refused_at_node(loc.replace(here.url, other.url)) == (403, 403)
    r = hook(p, other.node, other.secret, f"/{tok}/1/{seg}")
    assert r.headers["x-frontdesk-denied"] == "token for another node"
    # The hook itself: no secret, a wrong one, another node's.
    assert hook(p, here.node, "", f"/{tok}/1/{seg}").status in (403, 404)
    r = hook(p, here.node, "0" * 64, f"/{tok}/1/{seg}")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "bad node credentials"
    r = hook(p, here.node, other.secret, f"/{tok}/1/{seg}")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "bad node credentials"
    r = fdedge.curl(f"{p.edge_url}/hook/nginx/{here.node.id}/{here.secret}")
    assert r.status == 400   # no X-Original-URI: a node misconfigured
    # And still fine for the player itself.
    assert hook(p, here.node, here.secret, f"/{tok}/1/{seg}").status == 204
    assert next_segment(loc) == (200, 200)


def test_kick_mid_stream(p, nodes):
    s = shop(p)
    line = new_line(s)
    got = play(live_url(p, s, line), n=2)
    assert next_segment(got.location) == (200, 200)
    (sess,) = sessions_of(s.t, line)
    kicked = time.monotonic()
    s.t.lines.KickSession(session_id=sess.id, reason="test")
    while True:
        status = next_segment(got.location)
        if status[0] == 403:
            break
        assert time.monotonic() - kicked < KICK_WITHIN, "kicked session still served"
    here = node_of(nodes, got.location)
    r = hook(p, here.node, here.secret, urllib.parse.urlsplit(got.location).path)
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "session ended"
    # The player comes back through the edge: a new session, playing.
    again = play(live_url(p, s, line))
    assert again.hls.segments[0].status == 200


def test_expired_token(p, nodes):
    p.replace_edged({"FRONTDESK_EDGED_TOKEN_TTL": "5"})
    try:
        s = shop(p)
        line = new_line(s)
        got = play(live_url(p, s, line))
        issued = time.monotonic()
        assert got.hls.segments[0].status == 200
        while next_segment(got.location)[0] == 200:
            assert time.monotonic() - issued < 7, "token served past its TTL"
            time.sleep(0.25)
        assert time.monotonic() - issued >= 3.5
        assert refused_at_node(got.location) == (403, 403)
        here = node_of(nodes, got.location)
        r = hook(p, here.node, here.secret, urllib.parse.urlsplit(got.location).path)
        assert r.headers["x-frontdesk-denied"] == "token expired"
    finally:
        p.replace_edged()


# ---------------------------------------------------------------------------
# A node dies.
# ---------------------------------------------------------------------------

def test_node_killed_player_goes_to_backup(p, nodes):
    s = shop(p)
    line = new_line(s)
    url = live_url(p, s, line)
    got = play(url, n=2)
    first = node_of(nodes, got.location)
    backup = next(n for n in nodes.list if n is not first)
    first.nginx.kill()
    nodes.sim.stop_heartbeats(first.node)
    assert fdedge.curl(got.location, timeout=3).status == 0   # nothing listens there now
    # The player comes back to the edge: routerd sees the node DOWN within
    # ~0.4 s and names the other one.
    deadline = time.monotonic() + 5
    while True:
        h = handoff(url)
        if h.status == 302 and h.headers["Location"].startswith(backup.url + "/"):
            break
        assert time.monotonic() < deadline, ("never sent to the backup", h.status, h.headers.get("Location"))
        time.sleep(0.1)
    again = fdedge.hls_segments(h.headers["Location"], 2)
    assert [x.status for x in again.segments] == [200, 200]
    assert len(sessions_of(s.t, line)) == 1
