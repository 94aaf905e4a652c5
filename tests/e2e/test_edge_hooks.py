"""The HTTP edge's other hooks end to end (services/edged/hooks.c, state.c):
Flussonic's auth backend called as Flussonic calls it (curl), nginx-rtmp
running the shipped docker/nginx/rtmp-node.conf with an ffmpeg publisher and
players (ffprobe, ffmpeg) going through on_play / on_update / on_play_done,
and what the hooks do while linesd's event stream is down.

What must hold:
- Flussonic: new_session and update_session with the hand-off's token answer
  200 with X-AuthDuration (1..30), X-UserId (the line), X-Max-Sessions (the
  line's limit) and X-Unique: true; every mismatch (stream, proto, address,
  node, token, node secret) is 403 with X-Frontdesk-Denied; a line's
  connection limit is applied at the hand-off; after KickSession the next
  update_session is 403 within 1 s;
- nginx-rtmp: /live/U/P/ID.rtmp redirects to rtmp://node/live/ID?fdt=token;
  ffprobe plays it through on_play; the session ends at linesd when the
  player leaves (on_play_done -> EndSession); a tampered token cannot play; a
  kicked player is dropped at the next on_update; the publisher's own
  updates are answered 2xx;
- linesd down (the watch broken, linesd unreachable): hooks serve known
  sessions for the grace (10 report periods, at least 5 s) from when the
  watch was last live, then refuse ("playback state unavailable"); the
  hand-off answers 503; once linesd is back the hooks serve again and a kick
  is seen.

Processes: one Stack (authd, billingd, routerd, linesd, edged) for the file,
one nginx-rtmp node with one ffmpeg publisher, and a Flussonic node that is
only registered (its hook is called by curl). Each test makes its own
tenant; the linesd outage is the last test."""
import os
import subprocess
import time
import urllib.parse

import pytest

import fdedge
import fdstack
import fdtest
from fdstack import L, ikey, ns

REPORT_MS = 500
GRACE_S = max(5.0, 10 * REPORT_MS / 1000)
ROUTERD_ENV = {"FRONTDESK_NODE_HEARTBEAT_MS": "200"}
EDGED_ENV = {"FRONTDESK_EDGED_REPORT_MS": str(REPORT_MS), "FRONTDESK_EDGED_HOSTS_REFRESH_MS": "100"}
WITHIN = 1.0
STREAM = 1


@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(routerd_replicas=1, routerd_env=ROUTERD_ENV, edged_env=EDGED_ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for c in codes.values() if isinstance(c, int)), codes


def node_secret(p, node_id):
    env = dict(os.environ, FRONTDESK_EDGED_SIGNING_KEYS=p.edged_signing_keys)
    r = subprocess.run([fdtest.binary("edged"), "--node-secret", str(node_id)], env=env, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def nodes(p):
    """The shared pool: a Flussonic node (M3U8, never contacted: its hook is
    called by curl) and an nginx-rtmp node (RTMP) with a publisher of STREAM."""
    sim = fdedge.NodeSim(p, None, period=0.1)
    ng = pub = None
    try:
        fl, _ = sim.add({fdedge.M3U8: f"http://127.0.0.1:{fdtest.free_port()}"}, name=fdstack.uniq("flussonic"))
        port = fdtest.free_port()
        rn, _ = sim.add({fdedge.RTMP: f"rtmp://127.0.0.1:{port}/live"}, name=fdstack.uniq("rtmp"))
        ng = fdedge.Nginx(fdedge.RTMP_CONF, {"edged": p.edged.target, "node_id": rn.id,
                                             "node_secret": node_secret(p, rn.id), "port": port,
                                             "update_timeout": "1s"})
        pub = fdedge.RtmpPublisher(f"{ng.rtmp}/live/{STREAM}").wait_publishing()
        yield ns(sim=sim, flussonic=ns(node=fl, secret=node_secret(p, fl.id)),
                 rtmp=ns(node=rn, secret=node_secret(p, rn.id), nginx=ng), publisher=pub)
    finally:
        if pub:
            pub.stop()
        if ng:
            ng.stop()
            ng.cleanup()
        sim.close()


def shop(p, max_connections=2):
    t = p.tenant()
    r = p.reseller(t, credits=10_000)
    cat = p.catalog(t, max_connections=max_connections)
    base = p.edge_url.replace("127.0.0.1", "localhost") + f"/t/{t.slug}"
    fdedge.wait_for(lambda: b"unknown tenant" not in fdedge.http_get(f"{base}/live/x/y/1.m3u8").body, 5,
                    "edged knows the tenant")
    return ns(t=t, r=r, cat=cat, base=base)


def new_line(s):
    return s.r.lines.CreateLine(reseller_id=s.r.id, package_id=s.cat.package.id, idempotency_key=ikey()).line


def handoff(s, line, ext, ua="Player/1"):
    return fdedge.http_get(f"{s.base}/live/{line.username}/{line.password}/{STREAM}.{ext}", follow=False,
                           headers={"User-Agent": ua})


def m3u8_token(s, line, ua="Player/1"):
    h = handoff(s, line, "m3u8", ua)
    assert h.status == 302, (h.status, h.body)
    return urllib.parse.urlsplit(h.headers["Location"]).path.split("/")[1]


def live_sessions(t, line):
    return [x for x in t.lines.ListSessions(line_id=line.id, page_size=100).sessions if x.ended_at == 0]


def flussonic(p, node, secret, **q):
    args = {"name": str(STREAM), "proto": "hls", "ip": "127.0.0.1", "request_type": "new_session",
            "session_id": "5f0c3e1a", "request_number": "1", "stream_clients": "0", "total_clients": "0",
            "duration": "0", "referer": ""}
    args.update({k: v for k, v in q.items() if v is not None})
    for k in [k for k, v in q.items() if v is None]:
        args.pop(k, None)
    return fdedge.curl(f"{p.edge_url}/hook/flussonic/{node.id}/{secret}?{urllib.parse.urlencode(args)}")


# ---------------------------------------------------------------------------
# Flussonic.
# ---------------------------------------------------------------------------

def test_flussonic_sessions(p, nodes):
    s = shop(p, max_connections=2)
    line = new_line(s)
    fl = nodes.flussonic
    tok = m3u8_token(s, line)
    r = flussonic(p, fl.node, fl.secret, token=tok)
    assert r.status == 200, (r.status, r.headers, r.body)
    h = r.headers
    assert h["x-userid"] == str(line.id)
    assert h["x-max-sessions"] == "2"
    assert h["x-unique"] == "true"
    assert 1 <= int(h["x-authduration"]) <= 30
    for n in range(2, 5):
        r = flussonic(p, fl.node, fl.secret, token=tok, request_type="update_session", request_number=str(n))
        assert r.status == 200, r.headers
    # Mismatches: each its own reason, nothing secret.
    cases = [
        (dict(name="2"), "stream mismatch"),
        (dict(name="abc"), "stream mismatch"),
        (dict(proto="mpegts"), "format mismatch"),
        (dict(proto="dash"), "format mismatch"),
        (dict(ip="10.1.2.3"), "address mismatch"),
        (dict(token=None), "token required (play through the edge's /live/ URL)"),
        (dict(token="x" * 122), "invalid token"),
        (dict(token=tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB")), "invalid token"),
    ]
    for change, why in cases:
        q = {"token": tok, **change}
        r = flussonic(p, fl.node, fl.secret, **q)
        assert r.status == 403 and r.headers["x-frontdesk-denied"] == why, (change, r.status, r.headers)
        assert "x-userid" not in r.headers
    r = flussonic(p, fl.node, "0" * 64, token=tok)
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "bad node credentials"
    r = flussonic(p, fl.node, fl.secret, token=tok, request_type="close_session")
    assert r.status == 400
    # A token made for the RTMP node is not the Flussonic node's.
    h = handoff(s, line, "rtmp", ua="Other/1")
    rtmp_tok = urllib.parse.parse_qs(urllib.parse.urlsplit(h.headers["Location"]).query)["fdt"][0]
    r = flussonic(p, fl.node, fl.secret, token=rtmp_tok, proto="rtmp")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "token for another node"

    # The line's limit (2: Player/1 and Other/1) is applied at the hand-off.
    third = handoff(s, line, "m3u8", ua="Third/1")
    assert third.status == 403 and b"too many connections" in third.body

    # A kick: the next update_session is refused.
    (sess,) = [x for x in live_sessions(s.t, line) if x.user_agent == "Player/1"]
    kicked = time.monotonic()
    s.t.lines.KickSession(session_id=sess.id, reason="test")
    while True:
        r = flussonic(p, fl.node, fl.secret, token=tok, request_type="update_session")
        if r.status == 403:
            assert r.headers["x-frontdesk-denied"] == "session ended"
            break
        assert time.monotonic() - kicked < WITHIN, "a kicked session still allowed"
    # Its slot is free again: the player comes back with a new token.
    tok2 = m3u8_token(s, line, ua="Third/1")
    assert flussonic(p, fl.node, fl.secret, token=tok2).status == 200


# ---------------------------------------------------------------------------
# nginx-rtmp.
# ---------------------------------------------------------------------------

def rtmp_location(s, line, ua="Player/1"):
    h = handoff(s, line, "rtmp", ua)
    assert h.status == 302, (h.status, h.body)
    return h.headers["Location"]


def test_rtmp_play_through_hooks(p, nodes):
    s = shop(p)
    line = new_line(s)
    loc = rtmp_location(s, line)
    u = urllib.parse.urlsplit(loc)
    assert loc.startswith(nodes.rtmp.nginx.base_url + f"/{STREAM}?fdt=")
    assert line.username not in loc and line.password not in loc
    assert len(urllib.parse.parse_qs(u.query)["fdt"][0]) == 122
    probe = fdedge.ffprobe(loc)
    assert any(st["codec_type"] == "video" for st in probe["streams"]), probe
    # The player left: on_play_done ended its session at linesd.
    fdedge.wait_for(lambda: live_sessions(s.t, line) == [], 5, "the session ended by on_play_done")
    rows = p.rows(f"SELECT ended_at IS NOT NULL, end_reason FROM frontdesk.sessions "
                  f"WHERE tenant_id = {s.t.tenant} AND line_id = {line.id}")
    assert rows == [["t", str(L.SESSION_END_REASON_CLOSED)]], rows

    # The same token cannot play again (its session ended), nor a tampered one.
    with pytest.raises(RuntimeError):
        fdedge.ffprobe(loc, timeout=5)
    loc2 = rtmp_location(s, line)
    tok = urllib.parse.parse_qs(urllib.parse.urlsplit(loc2).query)["fdt"][0]
    bad = tok[:10] + ("A" if tok[10] != "A" else "B") + tok[11:]
    with pytest.raises(RuntimeError):
        fdedge.ffprobe(loc2.replace(tok, bad), timeout=5)
    # Another stream under the token.
    with pytest.raises(RuntimeError):
        fdedge.ffprobe(loc2.replace(f"/live/{STREAM}?", "/live/2?"), timeout=5)


def test_rtmp_kick_drops_the_player(p, nodes):
    s = shop(p)
    line = new_line(s)
    loc = rtmp_location(s, line)
    player = subprocess.Popen([fdedge.FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-rw_timeout",
                               "20000000", "-i", loc, "-t", "60", "-f", "null", "-"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        (sess,) = fdedge.wait_for(lambda: live_sessions(s.t, line), 5, "the RTMP session")
        time.sleep(2.5)   # playing, through a few on_update calls
        assert player.poll() is None, player.stderr.read()
        kicked = time.monotonic()
        s.t.lines.KickSession(session_id=sess.id, reason="test")
        player.wait(10)
        # notify_update_timeout is 1 s here: dropped at the next update.
        assert time.monotonic() - kicked < 4
    finally:
        if player.poll() is None:
            os.killpg(player.pid, 9)
            player.wait(5)


def test_rtmp_hook_direct(p, nodes):
    rn = nodes.rtmp
    base = f"{p.edge_url}/hook/rtmp/{rn.node.id}/{rn.secret}"
    r = fdedge.curl(f"{base}/update", "--data", f"call=update_publish&app=live&name={STREAM}&addr=127.0.0.1")
    assert r.status == 200
    r = fdedge.curl(f"{base}/play", "--data", f"call=play&app=live&name={STREAM}&addr=127.0.0.1")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "token required (fdt)"
    r = fdedge.curl(f"{p.edge_url}/hook/rtmp/{rn.node.id}/{'1' * 64}/play", "--data",
                    f"call=play&app=live&name={STREAM}&addr=127.0.0.1&fdt=x")
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "bad node credentials"
    r = fdedge.curl(f"{base}/publish", "--data", "call=publish")
    assert r.status == 404


# ---------------------------------------------------------------------------
# linesd away.
# ---------------------------------------------------------------------------

def test_hooks_while_linesd_is_down(p, nodes):
    s = shop(p)
    line = new_line(s)
    fl = nodes.flussonic
    tok = m3u8_token(s, line)

    def ask():
        return flussonic(p, fl.node, fl.secret, token=tok, request_type="update_session")

    assert ask().status == 200
    p.linesd[0].stop()
    down = time.monotonic()
    # Within the grace: served (linesd cannot be asked, the memory is not live).
    r = ask()
    assert r.status == 200, r.headers
    h = handoff(s, line, "m3u8", ua="New/1")
    assert h.status == 503 and h.headers.get("Retry-After"), (h.status, h.body)
    # Past it: refused until linesd answers again.
    while ask().status == 200:
        assert time.monotonic() - down < GRACE_S + 2, "served past the grace"
        time.sleep(0.2)
    assert time.monotonic() - down >= GRACE_S - 1
    r = ask()
    assert r.status == 403 and r.headers["x-frontdesk-denied"] == "playback state unavailable"

    p.replace_linesd(0)
    watching = "playback events: watching linesd"
    fdedge.wait_for(lambda: ask().status == 200, 10, "served again once linesd is back")
    # Most likely before the watch is back (its backoff reached seconds): the
    # session is asked of linesd, whose answer stands for one report period.
    early = p.edged.output().count(watching) < 2
    (sess,) = live_sessions(s.t, line)
    kicked = time.monotonic()
    s.t.lines.KickSession(session_id=sess.id, reason="test")
    while ask().status != 403:
        assert time.monotonic() - kicked < WITHIN, f"a kicked session still allowed (watch back: {not early})"
    # And once the watch is live again: a kick is seen within a second.
    fdedge.wait_for(lambda: p.edged.output().count(watching) >= 2, 10, "the watch live again")
    tok = m3u8_token(s, line, ua="Again/1")
    assert ask().status == 200
    (sess,) = live_sessions(s.t, line)
    kicked = time.monotonic()
    s.t.lines.KickSession(session_id=sess.id, reason="test")
    while ask().status != 403:
        assert time.monotonic() - kicked < WITHIN, "a kicked session still allowed"
