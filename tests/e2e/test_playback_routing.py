"""Playback routed to streaming nodes end to end: linesd (LinesService)
asking routerd (RoutingService) for the node of each new playback, and
following node state to move sessions whose node failed.

What must hold (api/frontdesk/v1/lines.proto AuthorizePlayback and
SessionHeartbeat, api/frontdesk/v1/routing.proto, /tmp/routerd_spec.md,
services/linesd/playback.c and services/linesd/routing.c):
- AuthorizePlayback of a stream (no node_id) asks Route: allowed => the
  response names the node (node_id, name, the URL for the output format,
  region, failure_domain) and up to two backups, and the session row
  (frontdesk.sessions.node_id) holds the node; client_country / client_region
  prefer nodes of the client's region; bad ones are INVALID_ARGUMENT;
- no node can take the viewer (all silent, draining, overloaded, another
  tenant's, shared pool forbidden, or the tenant at its bandwidth cap with
  REFUSE) => allowed=false, DENIAL_REASON_NO_NODE_AVAILABLE, nothing written;
  with BANDWIDTH_POLICY_LOWER_BITRATE => allowed, bandwidth_cap_kbps the
  lower of the package's cap and routerd's;
- SessionHeartbeat: when the session's node goes DOWN, DRAINING or
  OVERLOADED, the heartbeat routes again and moves the session (full node,
  backups, node_changed=true, the row updated); later heartbeats answer
  node_changed=false with the same node (node_id only); a session never moves
  to another tenant's node;
- a node's own auth hook (node_id set) places the session on that node
  without Route;
- without routerd: allowed, no node, a note saying routing is not configured.

Processes: one Stack (authd, billingd, one routerd, one linesd) for the file,
nodes told to heartbeat every 200 ms (DOWN 400 ms after the last one); the
tests' nodes report every BEAT s from a background thread (Beater) and fall
silent when a test pauses them. Each test uses tenants of its own; shared
pool nodes are disabled when the test that made them ends. One test starts
a second Stack without routerd."""
import itertools
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdstack  # noqa: E402
from fdapi import expect  # noqa: E402
from fdstack import C, L, R, ikey, ns  # noqa: E402

HB_MS = 200                # FRONTDESK_NODE_HEARTBEAT_MS: DOWN after 400 ms
BEAT = 0.1                 # how often the tests' nodes report
FAILOVER_WITHIN = 2.5      # the brief: a silent node's sessions move within ~2 s (+ margin)
EVENT_WITHIN = 2.0         # a drain / overload reaching linesd through WatchNodes (not bounded)
WAIT = 5.0                 # longest wait for anything else
PKG_CAP = 8000             # the package's bandwidth cap, kbit/s

ENV = {"FRONTDESK_NODE_HEARTBEAT_MS": str(HB_MS)}

TS, M3U8 = C.OUTPUT_FORMAT_TS, C.OUTPUT_FORMAT_M3U8
UP, DOWN, OVER = R.NODE_HEALTH_UP, R.NODE_HEALTH_DOWN, R.NODE_HEALTH_OVERLOADED
ACTIVE, DRAINING, DISABLED = R.NODE_STATE_ACTIVE, R.NODE_STATE_DRAINING, R.NODE_STATE_DISABLED
D = L.DenialReason
NO_NODE = L.DENIAL_REASON_NO_NODE_AVAILABLE
VLC = "VLC/3.0"

_ips = itertools.count(1)


def ip():
    """A client address no other check uses."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def load(conns=0, egress=0.0):
    return R.NodeLoad(active_connections=conns, egress_mbps=egress)


def wait_for(pred, timeout=WAIT, what="condition", interval=0.02):
    """Polls pred until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Fixtures and shops.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_replicas=1, routerd_replicas=1, routerd_env=ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for c in codes.values() if isinstance(c, int)), codes


@pytest.fixture(scope="module")
def edge(p):
    """The HTTP edge's Lines client (service token, playback_authorize)."""
    return p.edge()


def disable_shared_pool(p):
    pa = p.pa_routing()
    token = ""
    while True:
        r = pa.ListNodes(tenant_id=0, page_size=1000, page_token=token)
        for n in r.nodes:
            if n.tenant_id == 0 and n.state != DISABLED:
                pa.SetNodeState(tenant_id=0, node_id=n.id, state=DISABLED, reason="test ended")
        token = r.next_page_token
        if not token:
            return


@pytest.fixture
def beat(p):
    b = fdstack.Beater(p, BEAT)
    yield b
    b.stop()
    disable_shared_pool(p)
    assert not b.errors, b.errors[:5]


def make_shop(p, **catalog):
    """A tenant (admin t) with a reseller r (credits) and a catalog (3 streams,
    a package of 20 connections capped at PKG_CAP kbit/s)."""
    t = p.tenant()
    r = p.reseller(t, credits=100_000)
    catalog.setdefault("max_connections", 20)
    catalog.setdefault("bandwidth_cap_kbps", PKG_CAP)
    cat = p.catalog(t, **catalog)
    return ns(t=t, r=r, cat=cat, tenant=t.tenant)


def new_line(s):
    return s.r.lines.CreateLine(reseller_id=s.r.id, package_id=s.cat.package.id, idempotency_key=ikey()).line


def authorize(edge, s, line, stream=None, client_ip=None, **kw):
    return edge.AuthorizePlayback(tenant_id=s.tenant, username=line.username, password=line.password,
                                  stream_id=s.cat.streams[0] if stream is None else stream,
                                  client_ip=client_ip or ip(), user_agent=VLC, **kw)


def allowed(edge, s, line, **kw):
    a = authorize(edge, s, line, **kw)
    assert a.allowed, f"denied {D.Name(a.denial_reason)}: {a.message}"
    assert a.session_id > 0
    return a


def no_node(p, edge, s, line, **kw):
    """AuthorizePlayback is denied NO_NODE_AVAILABLE and writes no session."""
    before = sessions(p, s.tenant)
    a = authorize(edge, s, line, **kw)
    assert not a.allowed and a.denial_reason == NO_NODE, \
        f"want NO_NODE_AVAILABLE, got allowed={a.allowed} {D.Name(a.denial_reason)} node={a.node.node_id}: {a.message}"
    assert a.session_id == 0 and not a.HasField("node") and not a.backups
    assert sessions(p, s.tenant) == before, "a denied authorization wrote a session"
    return a


def beat_session(edge, s, sid):
    return edge.SessionHeartbeat(tenant_id=s.tenant, session_id=sid)


def row_node(p, sid):
    """frontdesk.sessions.node_id of session sid (as postgres)."""
    return int(p.sql(f"SELECT node_id FROM frontdesk.sessions WHERE id = {sid}"))


def sessions(p, tenant):
    return int(p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE tenant_id = {tenant}"))


def node_of(p, t, node):
    """GetNode as t's admin (None: platform admin)."""
    c = p.routing(t) if t is not None else p.pa_routing()
    return c.GetNode(tenant_id=0, node_id=node.id).node


def wait_health(p, t, node, health, timeout=WAIT):
    wait_for(lambda: node_of(p, t, node).health == health, timeout,
             f"node {node.id} {R.NodeHealth.Name(health)}")


def url_of(node, fmt):
    return next(u.base_url for u in node.urls if u.format == fmt)


def check_routed(rn, node, fmt=TS):
    """RoutedNode rn is `node` in full, with its URL for fmt."""
    assert rn.node_id == node.id, (rn.node_id, node.id)
    assert (rn.name, rn.url, rn.region, rn.country, rn.failure_domain) == \
        (node.name, url_of(node, fmt), node.region, node.country, node.failure_domain), rn


def failover(p, edge, s, sid, old, within, since=None):
    """Polls SessionHeartbeat until the session leaves node `old`; returns
    (answer, seconds since `since`)."""
    since = since or time.monotonic()
    deadline = since + within
    while True:
        h = beat_session(edge, s, sid)
        assert h.active, f"session {sid} ended: {L.SessionEndReason.Name(h.end_reason)}"
        if h.node_changed or h.node.node_id != old.id:
            took = time.monotonic() - since
            assert h.node_changed, f"node changed without node_changed: {h}"
            assert h.node.node_id != old.id
            return h, took
        assert h.node.node_id == old.id, h
        assert time.monotonic() < deadline, \
            f"session {sid} still on node {old.id} after {within} s (node_changed never true)"
        time.sleep(0.05)


def settle(edge, s, sid, node, timeout=WAIT):
    """Polls heartbeats until linesd knows the session's node is fit (the
    answer names only its id). Until the node's UP event reached linesd it
    asks Route (sticky): the same node in full, node_changed false."""
    def known():
        h = beat_session(edge, s, sid)
        assert h.active and not h.node_changed and h.node.node_id == node.id, h
        return h.node.name == ""
    wait_for(known, timeout, f"session {sid}: node {node.id} known fit to linesd", interval=0.05)


def steady(edge, s, sid, node, n=3):
    """n heartbeats: node_changed false, the same node (node_id only)."""
    for _ in range(n):
        h = beat_session(edge, s, sid)
        assert h.active and not h.node_changed, h
        assert h.node.node_id == node.id, (h.node.node_id, node.id)
        assert h.node.name == "" and h.node.url == "" and not h.backups, h
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# 1. A viewer gets a node and backups; region preference.
# ---------------------------------------------------------------------------

def three_nodes(p, beat, t):
    """eu-west node a (weight 100), us-east nodes b (200) and c (50), each in a
    failure domain of its own, all heartbeating."""
    a, ka = p.node(t, region="eu-west", country="GB", failure_domain="dc-a", weight=100)
    b, kb = p.node(t, region="us-east", country="US", failure_domain="dc-b", weight=200)
    c, kc = p.node(t, region="us-east", country="US", failure_domain="dc-c", weight=50)
    for n, k in ((a, ka), (b, kb), (c, kc)):
        assert beat.add(n, k).health == UP
    return a, b, c


def test_authorized_viewer_gets_a_node_and_backups_by_region(p, edge, beat):
    s = make_shop(p)
    a, b, c = three_nodes(p, beat, s.t)
    line = new_line(s)

    # GB => eu-west: a, despite b's higher weight; backups b then c (other
    # domains and region, then weight).
    r = allowed(edge, s, line, client_country="GB", output_format=TS)
    check_routed(r.node, a, TS)
    assert [x.node_id for x in r.backups] == [b.id, c.id], r.backups
    check_routed(r.backups[0], b, TS)
    check_routed(r.backups[1], c, TS)
    assert r.note == ""
    assert row_node(p, r.session_id) == a.id
    # The package's cap (routerd named none).
    assert r.bandwidth_cap_kbps == PKG_CAP

    # The URL follows the output format.
    r = allowed(edge, s, line, client_country="IE", output_format=M3U8)
    check_routed(r.node, a, M3U8)
    assert row_node(p, r.session_id) == a.id

    # client_region wins; US => us-east; nothing known => the highest weight.
    r = allowed(edge, s, line, client_region="eu-west", output_format=TS)
    assert r.node.node_id == a.id and row_node(p, r.session_id) == a.id
    r = allowed(edge, s, line, client_country="US", output_format=TS)
    check_routed(r.node, b, TS)
    assert row_node(p, r.session_id) == b.id
    assert [x.node_id for x in r.backups] == [a.id, c.id], r.backups   # other region first
    r = allowed(edge, s, line, output_format=TS)
    assert r.node.node_id == b.id and row_node(p, r.session_id) == b.id

    # A heartbeat of a session on a fit node: its node (id only), unchanged.
    settle(edge, s, r.session_id, b)
    steady(edge, s, r.session_id, b)

    # Bad client_country / client_region: INVALID_ARGUMENT, nothing written.
    before = sessions(p, s.tenant)
    for kw in ({"client_region": "mars-1"}, {"client_country": "gb"}, {"client_country": "GBR"}):
        msg = expect("INVALID_ARGUMENT", authorize, edge, s, line, **kw)
        assert msg.startswith(next(iter(kw)) + ":"), msg
    assert sessions(p, s.tenant) == before


# ---------------------------------------------------------------------------
# 2. Failover when the session's node falls silent.
# ---------------------------------------------------------------------------

def test_failover_at_heartbeat_when_the_node_goes_silent(p, edge, beat):
    s = make_shop(p)
    a, b, c = three_nodes(p, beat, s.t)
    line = new_line(s)
    r = allowed(edge, s, line, client_country="GB", output_format=TS)
    assert r.node.node_id == a.id and [x.node_id for x in r.backups] == [b.id, c.id]
    sid = r.session_id
    settle(edge, s, sid, a)
    steady(edge, s, sid, a, n=2)

    since = beat.pause(a)
    h, took = failover(p, edge, s, sid, a, FAILOVER_WITHIN, since)
    print(f"failover after the last heartbeat: {took:.2f} s")
    # The backup, in full, for the session's format; the dead node is no backup.
    check_routed(h.node, b, TS)
    assert h.node.node_id == r.backups[0].node_id
    assert [x.node_id for x in h.backups] == [c.id], h.backups
    assert row_node(p, sid) == b.id
    steady(edge, s, sid, b)
    assert row_node(p, sid) == b.id
    assert node_of(p, s.t, a).health == DOWN

    # a heartbeats again: new GB viewers go to it again; the moved session stays.
    beat.resume(a)
    wait_health(p, s.t, a, UP)
    r2 = allowed(edge, s, line, client_country="GB", output_format=TS)
    check_routed(r2.node, a, TS)
    assert row_node(p, r2.session_id) == a.id
    steady(edge, s, sid, b)
    settle(edge, s, r2.session_id, a)
    steady(edge, s, r2.session_id, a)


# ---------------------------------------------------------------------------
# 3. Draining and overloaded nodes.
# ---------------------------------------------------------------------------

def test_draining_and_overloaded_nodes_move_sessions(p, edge, beat):
    s = make_shop(p)
    adm = p.routing(s.t)
    # One region; weights order them a > b > c. b overloads at 95 of 100.
    a, ka = p.node(s.t, failure_domain="dc-a", weight=300)
    b, kb = p.node(s.t, failure_domain="dc-b", weight=200, max_connections=100)
    c, kc = p.node(s.t, failure_domain="dc-c", weight=100)
    for n, k in ((a, ka), (b, kb), (c, kc)):
        beat.add(n, k)
    line = new_line(s)
    r = allowed(edge, s, line, output_format=TS)
    assert r.node.node_id == a.id
    sid = r.session_id
    settle(edge, s, sid, a)

    # Draining: the next heartbeat (once the event reached linesd) moves it.
    assert adm.SetNodeState(tenant_id=0, node_id=a.id, state=DRAINING, reason="maintenance").node.state == DRAINING
    h, took = failover(p, edge, s, sid, a, EVENT_WITHIN)
    print(f"moved off the draining node in {took:.2f} s")
    check_routed(h.node, b, TS)
    assert row_node(p, sid) == b.id
    steady(edge, s, sid, b)
    # New viewers avoid the draining node.
    r2 = allowed(edge, s, line, output_format=TS)
    assert r2.node.node_id == b.id and a.id not in [x.node_id for x in r2.backups]

    # Overloaded: b reports 95% of its max_connections.
    d = beat.set(b, load(conns=95))
    assert d.health == OVER and d.drain, d
    h, took = failover(p, edge, s, sid, b, EVENT_WITHIN)
    print(f"moved off the overloaded node in {took:.2f} s")
    check_routed(h.node, c, TS)
    assert row_node(p, sid) == c.id
    steady(edge, s, sid, c)
    # New authorizations avoid it (and the draining one).
    for _ in range(3):
        r3 = allowed(edge, s, line, output_format=TS)
        assert r3.node.node_id == c.id, r3.node
        assert not {a.id, b.id} & {x.node_id for x in r3.backups}, r3.backups
        assert row_node(p, r3.session_id) == c.id
    # Back to active: a takes new viewers again.
    adm.SetNodeState(tenant_id=0, node_id=a.id, state=ACTIVE)
    wait_for(lambda: allowed(edge, s, new_line(s), output_format=TS).node.node_id == a.id, WAIT,
             "new viewers on the re-activated node", interval=0.1)


# ---------------------------------------------------------------------------
# 4. No node: all silent, the tenant's bandwidth cap.
# ---------------------------------------------------------------------------

def test_no_node_available(p, edge, beat):
    s = make_shop(p)
    a, ka = p.node(s.t, failure_domain="dc-a")
    b, kb = p.node(s.t, failure_domain="dc-b")
    beat.add(a, ka)
    beat.add(b, kb)
    line = new_line(s)
    allowed(edge, s, line)
    live_before = sessions(p, s.tenant)

    # All nodes silent.
    beat.pause(a)
    beat.pause(b)
    wait_health(p, s.t, a, DOWN)
    wait_health(p, s.t, b, DOWN)
    d = no_node(p, edge, s, line, client_country="GB")
    assert "no node can take the viewer" in d.message, d.message
    no_node(p, edge, s, line, output_format=M3U8)
    assert sessions(p, s.tenant) == live_before
    # Stream 0 (a login check) needs no node.
    a0 = authorize(edge, s, line, stream=0)
    assert a0.allowed and a0.session_id == 0
    # Without a node the line is still checked: its own denial comes first.
    bad = edge.AuthorizePlayback(tenant_id=s.tenant, username=line.username, password="wrong-password",
                                 stream_id=s.cat.streams[0], client_ip=ip(), user_agent=VLC)
    assert not bad.allowed and bad.denial_reason == L.DENIAL_REASON_BAD_CREDENTIALS, D.Name(bad.denial_reason)
    assert sessions(p, s.tenant) == live_before

    # At the bandwidth cap with REFUSE: 50 Mbps out of 10.
    beat.set(a, load(egress=50.0))
    wait_health(p, s.t, a, UP)
    allowed(edge, s, line)
    pa = p.pa_routing()
    tr = pa.SetTenantBandwidth(tenant_id=s.tenant, max_egress_mbps=10, policy=R.BANDWIDTH_POLICY_REFUSE).routing
    assert tr.max_egress_mbps == 10 and abs(tr.egress_mbps - 50.0) < 1e-6, tr
    d = no_node(p, edge, s, line)
    assert "bandwidth cap" in d.message, d.message

    # LOWER_BITRATE: allowed, the cap lowered to the minimum (below the package's).
    pa.SetTenantBandwidth(tenant_id=s.tenant, max_egress_mbps=10, policy=R.BANDWIDTH_POLICY_LOWER_BITRATE,
                          min_bitrate_kbps=2000)
    r = allowed(edge, s, line)
    assert r.node.node_id == a.id and r.bandwidth_cap_kbps == 2000, r
    assert row_node(p, r.session_id) == a.id
    # A minimum above the package's cap: the package's is the lower.
    pa.SetTenantBandwidth(tenant_id=s.tenant, max_egress_mbps=10, min_bitrate_kbps=PKG_CAP + 1000)
    assert allowed(edge, s, line).bandwidth_cap_kbps == PKG_CAP
    # Under the cap: the package's cap only.
    pa.SetTenantBandwidth(tenant_id=s.tenant, max_egress_mbps=10, min_bitrate_kbps=2000)
    beat.set(a, load(egress=5.0))
    assert allowed(edge, s, line).bandwidth_cap_kbps == PKG_CAP


# ---------------------------------------------------------------------------
# 5. Tenants' nodes and the shared pool.
# ---------------------------------------------------------------------------

def test_isolation_and_shared_pool(p, edge, beat):
    sa = make_shop(p)
    sb = make_shop(p)
    la, lb = new_line(sa), new_line(sb)
    # B has the only healthy node; A's own node has never reported.
    nb, kb = p.node(sb.t, failure_domain="dc-b", weight=1000)
    beat.add(nb, kb)
    na, ka = p.node(sa.t, failure_domain="dc-a")
    for _ in range(3):
        no_node(p, edge, sa, la)
    r = allowed(edge, sb, lb)
    assert r.node.node_id == nb.id and row_node(p, r.session_id) == nb.id

    # A's own node up: A's viewers go there, never to B's.
    beat.add(na, ka)
    for _ in range(3):
        r = allowed(edge, sa, la)
        assert r.node.node_id == na.id and nb.id not in [x.node_id for x in r.backups], r
        assert row_node(p, r.session_id) == na.id
    sid_a = r.session_id

    # A's node falls silent: A's session is not moved to B's node.
    beat.pause(na)
    wait_health(p, sa.t, na, DOWN)
    time.sleep(0.5)   # the DOWN event reaching linesd
    for _ in range(5):
        h = beat_session(edge, sa, sid_a)
        assert h.active and not h.node_changed and h.node.node_id == na.id, h
        time.sleep(0.05)
    assert row_node(p, sid_a) == na.id
    no_node(p, edge, sa, la)

    # A shared-pool node serves every tenant by default.
    sh, ksh = p.node(None, failure_domain="dc-shared")
    assert sh.tenant_id == 0
    beat.add(sh, ksh)
    r = allowed(edge, sa, la)
    assert r.node.node_id == sh.id and row_node(p, r.session_id) == sh.id
    # ... and A's silent session moves there.
    h, _ = failover(p, edge, sa, sid_a, na, WAIT)
    assert h.node.node_id == sh.id and row_node(p, sid_a) == sh.id
    sc = make_shop(p)
    r = allowed(edge, sc, new_line(sc))
    assert r.node.node_id == sh.id

    # Forbidden to A: A's viewers are not routed to it.
    tr = p.pa_routing().SetSharedPoolAccess(tenant_id=sa.tenant, allowed=False).routing
    assert not tr.shared_pool_allowed
    for _ in range(3):
        no_node(p, edge, sa, la)
    # A's own node back: A's viewers go there, still never to the pool or B.
    beat.resume(na)
    wait_health(p, sa.t, na, UP)
    for _ in range(3):
        r = allowed(edge, sa, la)
        assert r.node.node_id == na.id, r.node
        assert not {sh.id, nb.id} & {x.node_id for x in r.backups}, r.backups
    # Other tenants still use the pool.
    assert allowed(edge, sc, new_line(sc)).node.node_id == sh.id


# ---------------------------------------------------------------------------
# 6. A node's own auth hook.
# ---------------------------------------------------------------------------

def test_node_hook_places_the_session_on_that_node(p, edge, beat):
    s = make_shop(p)
    line = new_line(s)
    # The tenant's only node has never reported: Route has nothing to offer.
    x, _ = p.node(s.t)
    assert node_of(p, s.t, x).health == DOWN
    no_node(p, edge, s, line)

    r = allowed(edge, s, line, node_id=x.id, output_format=TS)
    assert r.node.node_id == x.id, r.node
    assert not r.backups
    assert row_node(p, r.session_id) == x.id
    assert r.bandwidth_cap_kbps == PKG_CAP

    # With a healthy node of higher weight, the hook still places it on x.
    y, ky = p.node(s.t, weight=1000)
    beat.add(y, ky)
    assert allowed(edge, s, line).node.node_id == y.id
    r = allowed(edge, s, line, node_id=x.id)
    assert r.node.node_id == x.id and row_node(p, r.session_id) == x.id


# ---------------------------------------------------------------------------
# Without routerd.
# ---------------------------------------------------------------------------

def test_without_routerd_a_note_and_no_node():
    q = fdstack.Stack(linesd_replicas=1, routerd_replicas=0)
    try:
        s = make_shop(q)
        line = new_line(s)
        r = allowed(q.edge(), s, line, client_country="GB")
        assert not r.HasField("node") and not r.backups, r
        assert "routing is not configured" in r.note, r.note
        assert row_node(q, r.session_id) == 0
        assert r.bandwidth_cap_kbps == PKG_CAP
    finally:
        q.close()


def test_suspended_tenant_is_denied_as_such_with_routing(p, edge, beat):
    """A suspended tenant's viewer is told TENANT_SUSPENDED (Route is not asked)."""
    s = make_shop(p)
    a, ka = p.node(s.t)
    beat.add(a, ka)
    line = new_line(s)
    allowed(edge, s, line)
    p.pa.auth.SuspendTenant(tenant_id=s.tenant, reason="unpaid invoice")
    try:
        d = wait_for(lambda: (lambda r: r if r.denial_reason == L.DENIAL_REASON_TENANT_SUSPENDED else None)(
            authorize(edge, s, line)), timeout=10, what="TENANT_SUSPENDED")
        assert not d.allowed and d.session_id == 0
    finally:
        p.pa.auth.SuspendTenant(tenant_id=s.tenant, reactivate=True)
