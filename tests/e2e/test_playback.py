"""Playback end to end: AuthorizePlayback, SessionHeartbeat, EndSession,
ListSessions and KickSession through two linesd replicas on one database
(the HTTP edge's service token, scope playback_authorize), with checks of the
sessions in SQL as postgres.

What must hold (api/frontdesk/v1/lines.proto, migrations/0004_lines.sql
frontdesk.authorize_playback, services/linesd/playback.c):
- the connection limit is exact across replicas: three authorizations of a
  line with max 2 arriving at once at two replicas allow exactly two (the
  third is MAX_CONNECTIONS) and leave two live sessions; the same client IP,
  user agent and stream reopening counts once (session_reused, same id);
  with CONNECTION_LIMIT_POLICY_END_OLDEST the newcomer is allowed and the
  oldest session ends (REPLACED), seen by heartbeats at either replica;
- a line expires to the second (EXPIRED at once, its sessions end by the
  sweep, LINE_EXPIRED), with no job needed for the refusal;
- every rule of the line: CIDR and user agent locks, the stream in the
  line's bouquets, the package's output formats, stream 0 = the line only;
  banned, disabled (ending its sessions everywhere), suspended reseller (or
  an ancestor), suspended tenant (after the credentials only);
- bad credentials are indistinguishable and carry no line; failures are
  limited per (username, client IP) and per client IP, and a stranger cannot
  lock a line out from elsewhere;
- heartbeats: batched writes of last_seen_at, the session timeout,
  NOT_FOUND for unknown or another tenant's sessions;
- EndSession frees the slot; KickSession stops the next heartbeat anywhere
  and writes one audit row (session.kick, its actor, the line, the reason)
  in its own transaction; ListSessions shows the caller's subtree only, with
  filters and paging;
- tenants never see each other; playback needs the service scope;
- bad input answers INVALID_ARGUMENT and stores nothing, the text classes
  fd_check_text refuses included (whitespace only, bidi overrides and
  isolates, C1 controls) in every free-text field of playback (KickSession's
  reason, AuthorizePlayback's user_agent and client_session_key: a player's
  input, refused the same way).

Processes: one Stack (authd, billingd, two linesd) for the whole file, with
a fast sweep (0.5 s), a 5 s session timeout, heartbeats flushed every
0.2 s and low failure limits (5 per username and address, 20 per address).
Each test uses client addresses of its own, and tests that change a
tenant-wide setting or suspend something use a tenant of their own.

Cache note: every replica answers heartbeats from a cache that other
replicas' changes reach through NOTIFY (asynchronous, milliseconds). Checks
of "the next heartbeat at the OTHER replica" therefore poll for up to
PROPAGATION seconds; a cache that is never told keeps answering active (the
poll refreshes it), so such a bug still fails."""
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdapi  # noqa: E402
import fdstack  # noqa: E402
import fdtest  # noqa: E402
from fdapi import Lines, code_of, expect, outcome  # noqa: E402
from fdstack import A, C, L, ikey, ns, uniq  # noqa: E402

SWEEP_MS = 500
SESSION_TIMEOUT = 5
FLUSH_MS = 200
FAIL_MAX_USER = 5
FAIL_MAX_IP = 20
FAIL_WINDOW = 300                     # FRONTDESK_PLAYBACK_FAIL_WINDOW default

ENV = {
    "FRONTDESK_LINESD_SWEEP_MS": str(SWEEP_MS),
    "FRONTDESK_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
    "FRONTDESK_HEARTBEAT_FLUSH_MS": str(FLUSH_MS),
    "FRONTDESK_PLAYBACK_FAIL_MAX_USER": str(FAIL_MAX_USER),
    "FRONTDESK_PLAYBACK_FAIL_MAX_IP": str(FAIL_MAX_IP),
}

PROPAGATION = 1.0        # NOTIFY reaching the other replica's cache
# An authorization's statement as pg_stat_activity shows it: the whole
# decision, or a session opened for a line whose rules linesd holds.
AUTHORIZATIONS = "%(authorize_playback|open_session)\\(%"
WARM_SETTLE = 0.5        # a line's own events reaching both replicas (see warm)
SWEPT_WITHIN = 5.0       # the sweep (every 0.5 s) ending sessions
SUSPENDED_WITHIN = 5.0   # the contract: a suspension is seen within 5 s
RACE_ROUNDS = 20
# Calls at once that both replicas surely run in parallel (each has 8 threads
# and a pool of 8 database connections, some busy with LISTEN and the sweep).
BURST = 6

D = L.DenialReason
E = L.SessionEndReason
VLC = "VLC/3.0"

_ips = itertools.count(1)


def ip():
    """A client address no other check uses (10.0.0.0/8)."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


# ---------------------------------------------------------------------------
# The platform and shops.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_replicas=2, linesd_env=ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for k, c in codes.items() if k.startswith("linesd")), codes


@pytest.fixture(scope="module")
def edges(p):
    """The edge's Lines clients at replica 0 and replica 1."""
    return [p.edge(0), p.edge(1)]


def make_shop(p, policy=None, **catalog):
    """A tenant (admin t) with reseller r (credits), its sub-reseller r2, a
    sibling r3 and a catalog (3 streams in one bouquet, a package of max 2
    connections)."""
    t = p.tenant()
    r = p.reseller(t, credits=100_000)
    r2 = p.reseller(t, creator=r, parent_id=r.id, credits=0)
    p.mint(t, r2.id, 100_000)
    r3 = p.reseller(t, credits=100_000)
    cat = p.catalog(t, **catalog)
    if policy:
        t.lines.UpdateLinesSettings(connection_limit_policy=policy)
    return ns(t=t, r=r, r2=r2, r3=r3, cat=cat, tenant=t.tenant)


@pytest.fixture(scope="module")
def shop(p):
    return make_shop(p)


def new_line(s, owner=None, package=None, **kw):
    owner = owner or s.r
    return owner.lines.CreateLine(reseller_id=owner.id, package_id=(package or s.cat.package).id,
                                  idempotency_key=ikey(), **kw).line


def authorize(edge, s, line, stream=None, client_ip=None, ua=VLC, password=None, username=None, **kw):
    return edge.AuthorizePlayback(
        tenant_id=s.tenant, username=line.username if username is None else username,
        password=line.password if password is None else password,
        stream_id=s.cat.streams[0] if stream is None else stream,
        client_ip=client_ip or ip(), user_agent=ua, **kw)


def allowed(edge, s, line, **kw):
    a = authorize(edge, s, line, **kw)
    assert a.allowed, f"denied {L.DenialReason.Name(a.denial_reason)}: {a.message}"
    return a


def denied(edge, s, line, reason, **kw):
    a = authorize(edge, s, line, **kw)
    assert not a.allowed and a.denial_reason == reason, \
        f"want {D.Name(reason)}, got allowed={a.allowed} {D.Name(a.denial_reason)}"
    assert a.session_id == 0
    return a


def beat(edge, s, sid):
    return edge.SessionHeartbeat(tenant_id=s.tenant, session_id=sid)


def ended_at(edge, s, sid, reason, within=PROPAGATION):
    """Polls heartbeats at `edge` until one says the session ended; asserts
    the reason. Returns the seconds it took."""
    start = time.time()
    while True:
        h = beat(edge, s, sid)
        if not h.active:
            assert h.end_reason == reason, \
                f"session {sid}: ended {E.Name(h.end_reason)}, want {E.Name(reason)}"
            return time.time() - start
        assert time.time() - start < within, \
            f"session {sid}: heartbeat still active after {within} s (want {E.Name(reason)})"
        time.sleep(0.05)


def warm(edges, s, *sids):
    """Both replicas cache the sessions (heartbeats at each), and still do
    once the line's own events have surely arrived: line.created and the
    like make a replica forget the line's sessions, so a heartbeat cached
    before that event is processed would prove nothing."""
    for pause in (WARM_SETTLE, 0):
        for e in edges:
            for sid in sids:
                assert beat(e, s, sid).active, f"session {sid} not active"
        time.sleep(pause)


def live(p, line_id):
    return int(p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line_id} AND ended_at IS NULL"))


def live_ids(p, line_id):
    return {int(x) for x in p.sql(f"SELECT id FROM frontdesk.sessions WHERE line_id = {line_id}"
                                  " AND ended_at IS NULL").split()}


def session_row(p, sid):
    """(ended, end_reason) of a session row."""
    r = p.rows(f"SELECT ended_at IS NOT NULL, end_reason FROM frontdesk.sessions WHERE id = {sid}")
    assert r, f"no row for session {sid}"
    return r[0][0] == "t", int(r[0][1])


def wait_until(pred, timeout, what, interval=0.1):
    start = time.time()
    while not pred():
        assert time.time() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(interval)
    return time.time() - start


class Gate:
    """A statement run by postgres in a transaction held open (a table lock,
    a row lock, an uncommitted row): authorizations that need what it holds
    wait behind it, and all go on at once when it commits. Makes a race
    certain instead of likely."""

    def __init__(self, p, sql):
        self.p = p
        self.app = "fdgate-" + uuid.uuid4().hex[:12]
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", fdtest.PGHOST, "-p", str(fdtest.PGPORT),
             "-U", "postgres", "-d", p.db.name],
            env=dict(os.environ, PGAPPNAME=self.app),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN;\n{sql};\n")
        self.proc.stdin.flush()
        held = (f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{self.app}'"
                " AND state = 'idle in transaction' AND query NOT ILIKE 'begin%'")
        wait_until(lambda: self.proc.poll() is None and self.p.sql(held) == "1", 5.0, f"gate held: {sql}", 0.02)

    def wait_for(self, n, like=AUTHORIZATIONS):
        """Until n statements (authorizations by default) wait behind the gate."""
        q = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
             f" AND wait_event_type = 'Lock' AND query SIMILAR TO '{like}'")
        wait_until(lambda: int(self.p.sql(q)) >= n, 5.0, f"{n} of {like} waiting behind the gate", 0.02)

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()


def race(calls, gate=None, like=AUTHORIZATIONS):
    """Runs the calls at the same moment (threads behind a barrier); with a
    gate = (p, sql), they also all wait behind a Gate until every one of
    them (a statement SIMILAR TO like) is there. Returns (code, response or
    details) of each, in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)
    g = Gate(*gate) if gate else None

    def run(i):
        barrier.wait()
        out[i] = outcome(calls[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    try:
        for th in threads:
            th.start()
        if g:
            g.wait_for(len(calls), like)
    finally:
        if g:
            g.release()
    for th in threads:
        th.join(30)
    assert all(o is not None for o in out), "a call did not finish"
    return out


def sessions_gate(p):
    """New sessions wait (INSERT and UPDATE of frontdesk.sessions need a
    lock SHARE mode refuses; reads go on): without a lock of their own,
    every authorization would count the live sessions before any insert
    lands. Each waits inside the connection limit's critical section, or
    for its lock."""
    return (p, "LOCK TABLE frontdesk.sessions IN SHARE MODE")


def streams_gate(p):
    """All authorizations wait at the stream check, just before the
    connection limit, and go on together."""
    return (p, "LOCK TABLE frontdesk.streams IN ACCESS EXCLUSIVE MODE")


def listed(who, **kw):
    """Every session ListSessions shows `who`, across pages."""
    got, token = [], ""
    size = kw.pop("page_size", 100)
    for _ in range(100):
        r = who.ListSessions(page_size=size, page_token=token, **kw)
        got.extend(r.sessions)
        token = r.next_page_token
        if not token:
            return got
    raise AssertionError("ListSessions never ended")


# ---------------------------------------------------------------------------
# 1. The connection limit.
# ---------------------------------------------------------------------------

def test_connection_limit_is_exact_across_replicas(p, shop, edges):
    """Three authorizations at the same moment at two replicas, each from
    another client: exactly two allowed, the third MAX_CONNECTIONS, two live
    sessions; repeated on fresh lines."""
    lines = [new_line(shop) for _ in range(RACE_ROUNDS)]
    for n, line in enumerate(lines):
        calls = [(lambda e=edges[(n + i) % 2], a=ip(): authorize(e, shop, line, client_ip=a, ua=f"ua-{i}"))
                 for i in range(3)]
        out = race(calls, gate=sessions_gate(p) if n % 2 == 0 else None)
        assert all(code == "OK" for code, _ in out), out
        ok = [a for _, a in out if a.allowed]
        no = [a for _, a in out if not a.allowed]
        assert len(ok) == 2, f"round {n}: {len(ok)} allowed of 3 on a line of max 2"
        assert [a.denial_reason for a in no] == [D.DENIAL_REASON_MAX_CONNECTIONS], no
        assert no[0].session_id == 0 and no[0].line.id == line.id
        ids = {a.session_id for a in ok}
        assert len(ids) == 2 and 0 not in ids and not any(a.session_reused for a in ok)
        assert live_ids(p, line.id) == ids, f"round {n}"


def test_same_connection_reopening_counts_once(p, shop, edges):
    line = new_line(shop)
    ip1, ip2 = ip(), ip()
    s1 = allowed(edges[0], shop, line, client_ip=ip1)
    assert not s1.session_reused and s1.session_id > 0
    # The same IP, user agent and stream, at the other replica: the same session.
    again = allowed(edges[1], shop, line, client_ip=ip1)
    assert again.session_reused and again.session_id == s1.session_id
    s2 = allowed(edges[1], shop, line, client_ip=ip2)
    assert s2.session_id != s1.session_id and not s2.session_reused
    assert live(p, line.id) == 2
    # At the limit, reopening is still the same connection, on either replica.
    for e in edges:
        a = allowed(e, shop, line, client_ip=ip1)
        assert a.session_reused and a.session_id == s1.session_id
        a = allowed(e, shop, line, client_ip=ip2)
        assert a.session_reused and a.session_id == s2.session_id
    # Another user agent or another address is another connection. (The
    # same client on another stream replaces its own session: test_zapping.py.)
    denied(edges[0], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS, client_ip=ip1, ua="Kodi/20")
    denied(edges[1], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS, client_ip=ip2, ua="Kodi/20",
           stream=shop.cat.streams[1])
    denied(edges[0], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS, client_ip=ip())
    assert live_ids(p, line.id) == {s1.session_id, s2.session_id}

    # Identical requests at the same moment at both replicas: one session.
    for _ in range(5):
        line = new_line(shop)
        a = ip()
        out = race([(lambda e=edges[i % 2]: authorize(e, shop, line, client_ip=a)) for i in range(4)],
                   gate=sessions_gate(p))
        assert all(code == "OK" and r.allowed for code, r in out), out
        ids = {r.session_id for _, r in out}
        assert len(ids) == 1, f"identical requests opened {len(ids)} sessions"
        assert sorted(r.session_reused for _, r in out) == [False, True, True, True]
        assert live(p, line.id) == 1


@pytest.fixture(scope="module")
def oldest_shop(p):
    s = make_shop(p, policy=L.CONNECTION_LIMIT_POLICY_END_OLDEST)
    assert s.t.lines.GetLinesSettings().settings.connection_limit_policy == L.CONNECTION_LIMIT_POLICY_END_OLDEST
    return s


def test_end_oldest_replaces_the_oldest(p, oldest_shop, edges):
    s = oldest_shop
    line = new_line(s)
    s1 = allowed(edges[0], s, line)
    s2 = allowed(edges[1], s, line)
    warm(edges, s, s1.session_id, s2.session_id)
    s3 = allowed(edges[0], s, line)
    assert s3.replaced_session_id == s1.session_id, "the oldest session is the one replaced"
    assert live_ids(p, line.id) == {s2.session_id, s3.session_id}
    assert session_row(p, s1.session_id) == (True, E.SESSION_END_REASON_REPLACED)
    ended_at(edges[1], s, s1.session_id, E.SESSION_END_REASON_REPLACED)   # the other replica
    ended_at(edges[0], s, s1.session_id, E.SESSION_END_REASON_REPLACED)
    assert beat(edges[1], s, s2.session_id).active and beat(edges[0], s, s3.session_id).active
    # And the other way round: replica 1 replaces, replica 0 is told.
    warm(edges, s, s2.session_id)
    s4 = allowed(edges[1], s, line)
    assert s4.replaced_session_id == s2.session_id
    ended_at(edges[0], s, s2.session_id, E.SESSION_END_REASON_REPLACED)
    ended_at(edges[1], s, s2.session_id, E.SESSION_END_REASON_REPLACED)
    assert live_ids(p, line.id) == {s3.session_id, s4.session_id}
    # A reopened connection replaces nothing.
    again = allowed(edges[0], s, line, client_ip=client_ip_of(p, s3.session_id))
    assert again.session_reused and again.session_id == s3.session_id and again.replaced_session_id == 0
    assert live(p, line.id) == 2


def client_ip_of(p, sid):
    return p.sql(f"SELECT host(client_ip) FROM frontdesk.sessions WHERE id = {sid}")


def end_oldest_round(p, s, edges, gate):
    """BURST authorizations of a fresh max-2 line at once at both replicas
    under END_OLDEST. Checks: all allowed, each past the limit ended exactly
    one older session, two stay live. Returns (out, replaced ids)."""
    line = new_line(s)
    out = race([(lambda e=edges[i % 2], a=ip(): authorize(e, s, line, client_ip=a)) for i in range(BURST)],
               gate=gate)
    assert all(code == "OK" and r.allowed for code, r in out), out
    ids = {r.session_id for _, r in out}
    replaced = [r.replaced_session_id for _, r in out if r.replaced_session_id]
    assert len(ids) == BURST
    assert len(replaced) == BURST - 2 and set(replaced) <= ids, f"replaced {replaced} of {ids}"
    assert live_ids(p, line.id) == ids - set(replaced)
    for sid in replaced:
        assert session_row(p, sid) == (True, E.SESSION_END_REASON_REPLACED)
    return out, replaced


def test_end_oldest_race_leaves_max_live(p, oldest_shop, edges):
    """END_OLDEST under a race at two replicas still leaves exactly max live."""
    for n in range(10):
        end_oldest_round(p, oldest_shop, edges, sessions_gate(p) if n % 2 == 0 else None)


def test_end_oldest_race_replaced_sessions_stop_everywhere(p, oldest_shop, edges):
    """The same race; then every replaced session's heartbeat says REPLACED
    at both replicas, the one that opened it included (its cache must not
    keep a session another authorization ended meanwhile)."""
    s = oldest_shop
    for n in range(10):
        out, replaced = end_oldest_round(p, s, edges, sessions_gate(p) if n % 2 == 0 else streams_gate(p))
        opened_at = {r.session_id: i % 2 for i, (_, r) in enumerate(out)}
        replaced_at = {r.replaced_session_id: i % 2 for i, (_, r) in enumerate(out)}
        for sid in replaced:
            for k in (0, 1):
                try:
                    ended_at(edges[k], s, sid, E.SESSION_END_REASON_REPLACED)
                except AssertionError as e:
                    raise AssertionError(f"round {n}: replica {k}: {e} (opened at replica {opened_at[sid]},"
                                         f" replaced through replica {replaced_at[sid]})") from None


# ---------------------------------------------------------------------------
# 2. Expiry to the second.
# ---------------------------------------------------------------------------

def test_expiry_to_the_second(p, shop, edges):
    line = new_line(shop)
    other = new_line(shop)
    expires = int(p.sql(f"WITH u AS (UPDATE frontdesk.lines SET expires_at = date_trunc('second', now())"
                        f" + interval '2 seconds' WHERE id = {line.id} RETURNING expires_at)"
                        f" SELECT extract(epoch FROM expires_at)::bigint FROM u"))
    assert expires - time.time() > 1.0
    a = allowed(edges[0], shop, line)
    assert a.line.expires_at == expires
    b = allowed(edges[1], shop, line)
    for e in edges:
        for x in (a, b):
            h = beat(e, shop, x.session_id)
            assert h.active and h.expires_at == expires
    # Just before the second: still allowed (a check of the line only).
    time.sleep(max(0.0, expires - 0.5 - time.time()))
    assert time.time() < expires
    allowed(edges[1], shop, line, stream=0)
    # Just after it: EXPIRED at once, at both replicas, without any job.
    time.sleep(max(0.0, expires + 0.05 - time.time()))
    for e in edges:
        d = denied(e, shop, line, D.DENIAL_REASON_EXPIRED)
        assert d.line.status == L.LINE_STATUS_EXPIRED
    denied(edges[0], shop, line, D.DENIAL_REASON_EXPIRED, stream=0)
    assert time.time() < expires + 1.0, "the checks took too long to prove 'to the second'"
    allowed(edges[0], shop, other)            # other lines are unaffected
    # Its live sessions end by themselves (the sweep), LINE_EXPIRED.
    wait_until(lambda: live(p, line.id) == 0, SWEPT_WITHIN, "the expired line's sessions end")
    for x in (a, b):
        assert session_row(p, x.session_id) == (True, E.SESSION_END_REASON_LINE_EXPIRED)
        for e in edges:
            h = beat(e, shop, x.session_id)
            assert not h.active and h.end_reason == E.SESSION_END_REASON_LINE_EXPIRED


# ---------------------------------------------------------------------------
# 3. The rules of a line.
# ---------------------------------------------------------------------------

def test_ip_and_user_agent_locks(p, shop, edges):
    line = new_line(shop, allowed_ips=["203.0.113.0/24", "2001:db8::/32"], allowed_user_agents=[VLC])
    assert list(line.allowed_ips) == ["203.0.113.0/24", "2001:db8::/32"]
    a = allowed(edges[0], shop, line, client_ip="203.0.113.9")
    b = allowed(edges[1], shop, line, client_ip="2001:db8::1")
    assert a.session_id != b.session_id
    for e in edges:
        for addr in ("198.51.100.1", "203.0.114.9", "2001:db9::1", "10.9.9.9"):
            d = denied(e, shop, line, D.DENIAL_REASON_IP_NOT_ALLOWED, client_ip=addr)
            assert d.line.id == line.id          # the credentials were right: the line is shown
        for ua in ("Kodi", "vlc/3.0", "VLC/3.0 ", ""):
            denied(e, shop, line, D.DENIAL_REASON_UA_NOT_ALLOWED, client_ip="203.0.113.10", ua=ua)
        denied(e, shop, line, D.DENIAL_REASON_IP_NOT_ALLOWED, client_ip="198.51.100.1", stream=0)
    assert live(p, line.id) == 2


def test_stream_and_format_rules(p, shop, edges):
    t = shop.t
    line = new_line(shop)
    outside = t.lines.CreateStream(name=uniq("outside"), kind=L.STREAM_KIND_LIVE, idempotency_key=ikey()).stream.id
    for e in edges:
        d = denied(e, shop, line, D.DENIAL_REASON_STREAM_NOT_IN_PACKAGE, stream=outside)
        assert d.line.id == line.id
        denied(e, shop, line, D.DENIAL_REASON_STREAM_NOT_IN_PACKAGE, stream=987654)
    assert live(p, line.id) == 0
    # A package of M3U8 only.
    cat = p.catalog(t, allowed_output_formats=[C.OUTPUT_FORMAT_M3U8])
    assert list(cat.package.allowed_output_formats) == [C.OUTPUT_FORMAT_M3U8]
    hls = new_line(shop, package=cat.package)
    assert list(hls.allowed_output_formats) == [C.OUTPUT_FORMAT_M3U8]
    s = ns(tenant=shop.tenant, cat=cat)
    for e in edges:
        denied(e, s, hls, D.DENIAL_REASON_FORMAT_NOT_ALLOWED, output_format=C.OUTPUT_FORMAT_TS)
        denied(e, s, hls, D.DENIAL_REASON_FORMAT_NOT_ALLOWED, output_format=C.OUTPUT_FORMAT_RTMP)
    ok = allowed(edges[0], s, hls, output_format=C.OUTPUT_FORMAT_M3U8)
    assert ok.session_id > 0
    # The shop's package allows every format.
    allowed(edges[1], shop, line, output_format=C.OUTPUT_FORMAT_TS)


def test_stream_zero_checks_the_line_only(p, shop, edges):
    line = new_line(shop)
    for e in edges:
        a = allowed(e, shop, line, stream=0)
        assert a.session_id == 0 and not a.session_reused and a.line.id == line.id
    assert p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line.id}") == "0"
    # At the connection limit a check of the line is still allowed and opens nothing.
    allowed(edges[0], shop, line)
    allowed(edges[1], shop, line)
    denied(edges[0], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS)
    for e in edges:
        a = allowed(e, shop, line, stream=0)
        assert a.session_id == 0
    assert p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line.id}") == "2"


# ---------------------------------------------------------------------------
# 4. Banned, disabled, suspended.
# ---------------------------------------------------------------------------

def test_banned_and_disabled(p, shop, edges):
    banned = new_line(shop)
    shop.r.lines.SetLineStatus(line_id=banned.id, status=L.LINE_STATUS_BANNED, reason="abuse")
    disabled = new_line(shop)
    shop.r.lines.SetLineStatus(line_id=disabled.id, status=L.LINE_STATUS_DISABLED, reason="unpaid")
    for e in edges:
        d = denied(e, shop, banned, D.DENIAL_REASON_BANNED)
        assert d.line.status == L.LINE_STATUS_BANNED
        denied(e, shop, banned, D.DENIAL_REASON_BANNED, stream=0)
        d = denied(e, shop, disabled, D.DENIAL_REASON_DISABLED)
        assert d.line.status == L.LINE_STATUS_DISABLED
        denied(e, shop, disabled, D.DENIAL_REASON_DISABLED, stream=0)
        denied(e, shop, banned, D.DENIAL_REASON_BAD_CREDENTIALS, password="wrong-password")
    # Enabled again: allowed again.
    shop.r.lines.SetLineStatus(line_id=disabled.id, status=L.LINE_STATUS_ACTIVE)
    allowed(edges[1], shop, disabled)


def test_disabling_ends_sessions_on_both_replicas(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    b = allowed(edges[1], shop, line)
    warm(edges, shop, a.session_id, b.session_id)
    shop.r.lines.SetLineStatus(line_id=line.id, status=L.LINE_STATUS_DISABLED)
    assert live(p, line.id) == 0
    for x in (a, b):
        assert session_row(p, x.session_id) == (True, E.SESSION_END_REASON_LINE_REVOKED)
        for e in edges:
            ended_at(e, shop, x.session_id, E.SESSION_END_REASON_LINE_REVOKED)
    ids = {x.session_id for x in (a, b)}
    assert not ids & {x.id for x in listed(shop.r.lines)}
    denied(edges[0], shop, line, D.DENIAL_REASON_DISABLED)
    # Banning does the same.
    line = new_line(shop)
    a = allowed(edges[1], shop, line)
    warm(edges, shop, a.session_id)
    shop.t.lines.SetLineStatus(line_id=line.id, status=L.LINE_STATUS_BANNED)
    for e in edges:
        ended_at(e, shop, a.session_id, E.SESSION_END_REASON_LINE_REVOKED)
    assert live(p, line.id) == 0


def test_suspended_reseller(p, edges):
    s = make_shop(p)
    mine, subs, sibling = new_line(s), new_line(s, owner=s.r2), new_line(s, owner=s.r3)
    a = allowed(edges[0], s, mine)
    b = allowed(edges[1], s, subs)
    c = allowed(edges[0], s, sibling)
    s.t.auth.UpdateReseller(reseller_id=s.r.id, status=A.RESELLER_STATUS_SUSPENDED)
    start = time.time()
    wait_until(lambda: authorize(edges[0], s, mine, stream=0).denial_reason == D.DENIAL_REASON_RESELLER_SUSPENDED,
               SUSPENDED_WITHIN, "the reseller's suspension seen")
    for e in edges:
        d = denied(e, s, mine, D.DENIAL_REASON_RESELLER_SUSPENDED)
        assert d.line.id == mine.id
        denied(e, s, subs, D.DENIAL_REASON_RESELLER_SUSPENDED)     # its parent is suspended
        denied(e, s, subs, D.DENIAL_REASON_RESELLER_SUSPENDED, stream=0)
        denied(e, s, mine, D.DENIAL_REASON_BAD_CREDENTIALS, password="not-the-password")
        allowed(e, s, sibling, stream=0)                           # another branch plays on
    # The suspended subtree's live sessions end (LINE_REVOKED), the sibling's do not.
    for x in (a, b):
        for e in edges:
            ended_at(e, s, x.session_id, E.SESSION_END_REASON_LINE_REVOKED,
                     within=max(PROPAGATION, SUSPENDED_WITHIN - (time.time() - start)))
    assert live(p, mine.id) == 0 and live(p, subs.id) == 0
    assert beat(edges[1], s, c.session_id).active
    # Reactivated: plays again.
    s.t.auth.UpdateReseller(reseller_id=s.r.id, status=A.RESELLER_STATUS_ACTIVE)
    wait_until(lambda: authorize(edges[1], s, subs).allowed, SUSPENDED_WITHIN, "reactivation seen")


def test_suspended_tenant(p, edges):
    s = make_shop(p)
    line = new_line(s)
    a = allowed(edges[0], s, line)
    assert beat(edges[1], s, a.session_id).active
    p.pa.auth.SuspendTenant(tenant_id=s.tenant, reason="unpaid invoice")
    for e in edges:
        wait_until(lambda e=e: authorize(e, s, line, stream=0).denial_reason == D.DENIAL_REASON_TENANT_SUSPENDED,
                   SUSPENDED_WITHIN, "the tenant's suspension seen")
    for e in edges:
        d = denied(e, s, line, D.DENIAL_REASON_TENANT_SUSPENDED, stream=0)
        assert d.line.id == line.id
        # Only after the credentials are right.
        d = denied(e, s, line, D.DENIAL_REASON_BAD_CREDENTIALS, password="not-the-password")
        assert not d.HasField("line")
        denied(e, s, line, D.DENIAL_REASON_BAD_CREDENTIALS, username=uniq("nobody"))
        h = beat(e, s, a.session_id)
        assert not h.active and h.end_reason == E.SESSION_END_REASON_LINE_REVOKED
    p.pa.auth.SuspendTenant(tenant_id=s.tenant, reactivate=True)
    wait_until(lambda: authorize(edges[0], s, line).allowed, SUSPENDED_WITHIN, "reactivation seen")


# ---------------------------------------------------------------------------
# 5. Bad credentials and the failure limits.
# ---------------------------------------------------------------------------

def test_bad_credentials(p, shop, edges):
    line = new_line(shop)
    for e in edges:
        wrong = denied(e, shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password=line.password + "x")
        unknown = denied(e, shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, username=uniq("nobody"))
        for d in (wrong, unknown):
            assert not d.HasField("line") and d.retry_after_seconds == 0
        assert wrong.message == unknown.message, "unknown user and wrong password must look alike"
        denied(e, shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password="")
        # Usernames are not found by case.
        denied(e, shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, username=line.username.upper())
    assert live(p, line.id) == 0


def test_rate_limit_per_username_and_address(p, shop, edges):
    line = new_line(shop)
    other = new_line(shop)
    bad, good_elsewhere = ip(), ip()
    for i in range(FAIL_MAX_USER - 1):
        denied(edges[i % 2], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password=f"guess-{i}", client_ip=bad)
    allowed(edges[0], shop, line, client_ip=bad, stream=0)     # one below the limit: still checked
    denied(edges[1], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password="guess-last", client_ip=bad)
    for e in edges:
        # Past the limit: refused even with the right password, with a time to wait.
        d = rate_limited_within(e, shop, line, PROPAGATION, client_ip=bad)
        assert 0 < d.retry_after_seconds <= FAIL_WINDOW
        assert not d.HasField("line")
        d = denied(e, shop, line, D.DENIAL_REASON_RATE_LIMITED, client_ip=bad, stream=0)
        assert 0 < d.retry_after_seconds <= FAIL_WINDOW
        denied(e, shop, line, D.DENIAL_REASON_RATE_LIMITED, client_ip=bad, password="another-guess")
        # A stranger cannot lock the line out: the right password elsewhere plays.
        allowed(e, shop, line, client_ip=good_elsewhere)
        # Another username from the same address is not limited by this one.
        allowed(e, shop, other, client_ip=bad, stream=0)
    assert live(p, line.id) == 1
    n = p.sql(f"SELECT failures FROM frontdesk.playback_failures WHERE tenant_id = {shop.tenant}"
              f" AND key = 'u:{line.username}|{bad}'")
    assert n == str(FAIL_MAX_USER), "refused attempts are not counted again"


def guesses(p, shop, edges, line, addr, n, gate_sql):
    """n wrong passwords for line from addr at once at both replicas, all
    behind a gate; the denial reasons."""
    out = race([(lambda i=i: authorize(edges[i % 2], shop, line, password=f"burst-{i}", client_ip=addr, stream=0))
                for i in range(n)], gate=(p, gate_sql))
    assert all(code == "OK" for code, _ in out), out
    reasons = [r.denial_reason for _, r in out]
    assert set(reasons) <= {D.DENIAL_REASON_BAD_CREDENTIALS, D.DENIAL_REASON_RATE_LIMITED}, reasons
    return reasons


def test_parallel_guesses_are_limited_exactly(p, shop, edges):
    """A burst of wrong passwords for one (username, address) at the same
    moment at both replicas: no more than FAIL_MAX_USER of them are checked
    against the password, the rest are RATE_LIMITED."""
    # A counter exists (one failure so far) and is locked: the burst waits
    # for it and is counted one by one.
    line, addr = new_line(shop), ip()
    denied(edges[0], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password="first-guess", client_ip=addr)
    key = f"u:{line.username}|{addr}"
    reasons = guesses(p, shop, edges, line, addr, BURST,
                      f"SELECT 1 FROM frontdesk.playback_failures WHERE tenant_id = {shop.tenant}"
                      f" AND key = '{key}' FOR UPDATE")
    assert reasons.count(D.DENIAL_REASON_BAD_CREDENTIALS) == FAIL_MAX_USER - 1, reasons
    denied(edges[1], shop, line, D.DENIAL_REASON_RATE_LIMITED, client_ip=addr)
    # The first guesses of a window arrive together: the counter's first
    # insert is not committed yet while the others check it (the gate is
    # that uncommitted insert, of 0 failures). Still at most the limit.
    line, addr = new_line(shop), ip()
    key = f"u:{line.username}|{addr}"
    reasons = guesses(p, shop, edges, line, addr, BURST,
                      f"INSERT INTO frontdesk.playback_failures (tenant_id, key, failures)"
                      f" VALUES ({shop.tenant}, '{key}', 0)")
    checked = reasons.count(D.DENIAL_REASON_BAD_CREDENTIALS)
    counted = p.sql(f"SELECT failures FROM frontdesk.playback_failures WHERE tenant_id = {shop.tenant}"
                    f" AND key = '{key}'")
    assert checked <= FAIL_MAX_USER, \
        f"{checked} parallel guesses were checked against the password (limit {FAIL_MAX_USER}; counted {counted})"
    denied(edges[1], shop, line, D.DENIAL_REASON_RATE_LIMITED, client_ip=addr)


def rate_limited_within(edge, s, line, within, **kw):
    """RATE_LIMITED at edge within `within` s: a replica holding the line's
    rules hears of a limit reached at another through NOTIFY."""
    end = time.time() + within
    while True:
        r = authorize(edge, s, line, **kw)
        if not r.allowed and r.denial_reason == D.DENIAL_REASON_RATE_LIMITED:
            return r
        # Allowed from memory before the notice arrived: that session is
        # ended, so the caller's counts hold.
        if r.allowed and r.session_id:
            edge.EndSession(tenant_id=s.tenant, session_id=r.session_id)
        assert time.time() < end, f"not rate limited within {within} s: {r}"
        time.sleep(0.02)


def test_rate_limit_per_address(p, shop, edges):
    line = new_line(shop)
    crowd, clean = ip(), ip()
    for i in range(FAIL_MAX_IP - 1):
        denied(edges[i % 2], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, username=uniq(f"spray{i}"),
               client_ip=crowd)
    allowed(edges[0], shop, line, client_ip=crowd, stream=0)    # one below the limit
    denied(edges[1], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, username=uniq("spray-last"), client_ip=crowd)
    for e in edges:
        # The limit reaches a line's rules held in memory through NOTIFY.
        d = rate_limited_within(e, shop, line, PROPAGATION, client_ip=crowd)
        assert 0 < d.retry_after_seconds <= FAIL_WINDOW and not d.HasField("line")
        denied(e, shop, line, D.DENIAL_REASON_RATE_LIMITED, username=uniq("fresh"), client_ip=crowd)
        # Other addresses are unaffected.
        allowed(e, shop, line, client_ip=clean, stream=0)
        denied(e, shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, password="wrong-elsewhere", client_ip=ip())
    # The counters are the tenant's: another tenant's lines play from that address.
    other = make_shop(p)
    allowed(edges[0], other, new_line(other), client_ip=crowd)


# ---------------------------------------------------------------------------
# 6. Heartbeats.
# ---------------------------------------------------------------------------

def test_heartbeat_answers_and_writes_in_batches(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    t0 = float(p.sql(f"SELECT extract(epoch FROM last_seen_at) FROM frontdesk.sessions WHERE id = {a.session_id}"))
    for e in edges:
        h = beat(e, shop, a.session_id)
        assert h.active and h.end_reason == E.SESSION_END_REASON_UNSPECIFIED
        assert h.expires_at == line.expires_at and h.next_heartbeat_seconds > 0
    for i, e in enumerate(edges):
        time.sleep(1.5)
        sent = time.time()
        assert beat(e, shop, a.session_id).active
        time.sleep(1.2)
        seen = float(p.sql(f"SELECT extract(epoch FROM last_seen_at) FROM frontdesk.sessions"
                           f" WHERE id = {a.session_id}"))
        assert seen > t0 and seen >= int(sent) - 0.001, \
            f"replica {i}: last_seen_at {seen} not moved to the heartbeat at {sent} (was {t0})"
        t0 = seen


def test_session_timeout(p, shop, edges):
    """Without heartbeats a session ends after the timeout (TIMED_OUT); one
    that heartbeats (alternating replicas) lives on."""
    line = new_line(shop)
    quiet = allowed(edges[0], shop, line)
    kept = allowed(edges[1], shop, line)
    warm(edges, shop, quiet.session_id)
    start = time.time()
    i = 0
    while time.time() - start < SESSION_TIMEOUT + 1.5:
        assert beat(edges[i % 2], shop, kept.session_id).active, f"after {time.time() - start:.1f} s"
        i += 1
        time.sleep(0.8)
    ids = {x.id for x in listed(shop.r.lines, line_id=line.id)}
    assert ids == {kept.session_id}, "the timed-out session is not listed, the kept one is"
    assert session_row(p, quiet.session_id) == (True, E.SESSION_END_REASON_TIMED_OUT)
    for e in edges:
        h = beat(e, shop, quiet.session_id)
        assert not h.active and h.end_reason == E.SESSION_END_REASON_TIMED_OUT
    assert live_ids(p, line.id) == {kept.session_id}
    # The slot is free again.
    allowed(edges[0], shop, line)


def test_heartbeat_unknown_or_foreign_session(p, shop, edges):
    other = make_shop(p)
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    warm(edges, shop, a.session_id)
    for e in edges:
        expect("NOT_FOUND", e.SessionHeartbeat, tenant_id=shop.tenant, session_id=a.session_id + 1_000_000)
        expect("NOT_FOUND", e.SessionHeartbeat, tenant_id=other.tenant, session_id=a.session_id)
        expect("NOT_FOUND", e.EndSession, tenant_id=other.tenant, session_id=a.session_id)
        expect("NOT_FOUND", e.SessionHeartbeat, tenant_id=9_999_999, session_id=a.session_id)
    assert beat(edges[1], shop, a.session_id).active
    assert live(p, line.id) == 1


# ---------------------------------------------------------------------------
# 7. EndSession, KickSession, ListSessions.
# ---------------------------------------------------------------------------

def test_end_session_frees_the_slot(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    b = allowed(edges[1], shop, line)
    denied(edges[0], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS)
    warm(edges, shop, a.session_id)
    s = edges[0].EndSession(tenant_id=shop.tenant, session_id=a.session_id).session
    assert s.id == a.session_id and s.line_id == line.id and s.ended_at > 0
    assert s.end_reason == E.SESSION_END_REASON_CLOSED
    assert session_row(p, a.session_id) == (True, E.SESSION_END_REASON_CLOSED)
    assert {x.id for x in listed(shop.r.lines, line_id=line.id)} == {b.session_id}
    c = allowed(edges[1], shop, line)                         # the slot is free again
    assert c.session_id not in (a.session_id, b.session_id) and c.replaced_session_id == 0
    denied(edges[1], shop, line, D.DENIAL_REASON_MAX_CONNECTIONS)
    # Ending it again (at the same replica) changes nothing.
    again = edges[0].EndSession(tenant_id=shop.tenant, session_id=a.session_id).session
    assert again.end_reason == E.SESSION_END_REASON_CLOSED and again.ended_at == s.ended_at
    expect("NOT_FOUND", edges[0].EndSession, tenant_id=shop.tenant, session_id=a.session_id + 1_000_000)
    assert live_ids(p, line.id) == {b.session_id, c.session_id}
    # Ended means ended, at either replica: the player is told to stop (else
    # it plays on in a slot the line no longer counts: three players on two).
    for e in edges:
        ended_at(e, shop, a.session_id, E.SESSION_END_REASON_CLOSED)
    again = edges[1].EndSession(tenant_id=shop.tenant, session_id=a.session_id).session
    assert again.end_reason == E.SESSION_END_REASON_CLOSED and again.ended_at == s.ended_at


def test_kick_session(p, shop, edges):
    mine = new_line(shop)
    sub = new_line(shop, owner=shop.r2)
    a = allowed(edges[0], shop, mine)
    b = allowed(edges[1], shop, sub)
    warm(edges, shop, a.session_id, b.session_id)
    # Outside the caller's subtree: NOT_FOUND, nothing ends.
    expect("NOT_FOUND", shop.r3.lines.KickSession, session_id=a.session_id)
    expect("NOT_FOUND", shop.r2.lines.KickSession, session_id=a.session_id)
    assert live(p, mine.id) == 1
    # The reseller kicks its own line's session through replica 1.
    k = shop.r.at(1).KickSession(session_id=a.session_id, reason="sharing").session
    assert k.id == a.session_id and k.end_reason == E.SESSION_END_REASON_KICKED and k.ended_at > 0
    for e in edges:
        ended_at(e, shop, a.session_id, E.SESSION_END_REASON_KICKED)
    # ... and its sub-reseller's through replica 0.
    shop.r.lines.KickSession(session_id=b.session_id)
    for e in edges:
        ended_at(e, shop, b.session_id, E.SESSION_END_REASON_KICKED)
    assert live(p, mine.id) == 0 and live(p, sub.id) == 0
    assert session_row(p, a.session_id) == (True, E.SESSION_END_REASON_KICKED)
    expect("NOT_FOUND", shop.r.lines.KickSession, session_id=a.session_id + 1_000_000)
    expect("INVALID_ARGUMENT", shop.r.lines.KickSession, session_id=0)


def audit_rows(p, tenant, target):
    """The audit rows of target in tenant, as dicts, oldest first."""
    out = p.sql("SELECT coalesce(json_agg(json_build_object('actor', actor, 'account', actor_account_id,"
                " 'role', actor_role, 'path', actor_path, 'actor_tenant', actor_tenant_id, 'action', action,"
                " 'target', target, 'source', source, 'outcome', outcome, 'detail', detail) ORDER BY id), '[]')"
                f" FROM frontdesk.audit_events WHERE tenant_id = {tenant} AND target = '{target}'")
    return json.loads(out)


def account_path(p, tenant, account):
    return p.sql(f"SELECT path FROM frontdesk.accounts WHERE tenant_id = {tenant} AND id = {account}")


def test_kick_is_audited(p, shop, edges):
    """One row per kick that ended a session, written by the kick's own
    transaction: the actor (reseller or admin, its path), the target, the
    line and the reason; none for a kick refused or of an ended session;
    one for six kicks of one session at once at both replicas."""
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    target = f"session:{a.session_id}"
    expect("NOT_FOUND", shop.r3.lines.KickSession, session_id=a.session_id, reason="not mine")
    assert audit_rows(p, shop.tenant, target) == []
    shop.r.at(1).KickSession(session_id=a.session_id, reason="sharing the line")
    rows = audit_rows(p, shop.tenant, target)
    assert rows == [{
        "actor": f"reseller:{shop.r.id}", "account": shop.r.id, "role": "reseller",
        "path": account_path(p, shop.tenant, shop.r.id), "actor_tenant": shop.tenant,
        "action": "session.kick", "target": target, "source": "127.0.0.1", "outcome": "ok",
        "detail": {"line": str(line.id), "reason": "sharing the line"},
    }], rows
    # Kicking it again answers the ended session and records nothing.
    again = shop.r.lines.KickSession(session_id=a.session_id, reason="again")
    assert again.session.end_reason == E.SESSION_END_REASON_KICKED
    assert len(audit_rows(p, shop.tenant, target)) == 1

    # The tenant admin, no reason: its own actor, no reason in the detail.
    b = allowed(edges[1], shop, new_line(shop, owner=shop.r2))
    shop.t.at(0).KickSession(session_id=b.session_id)
    rows = audit_rows(p, shop.tenant, f"session:{b.session_id}")
    assert [(r["actor"], r["role"], r["path"], r["detail"]) for r in rows] == \
        [(f"admin:{shop.t.id}", "tenant_admin", "", {"line": str(b.line.id)})], rows

    # Six kicks of one session at once, at both replicas: one ended it, one row.
    for n in range(3):
        c = allowed(edges[n % 2], shop, new_line(shop))
        out = race([(lambda i=i: shop.r.at(i % 2).KickSession(session_id=c.session_id, reason=f"k{i}"))
                    for i in range(BURST)], gate=sessions_gate(p) if n == 0 else None,
                   like="%SET ended_at = now\\(\\), end_reason = \\$3%")
        assert all(code == "OK" and r.session.end_reason == E.SESSION_END_REASON_KICKED for code, r in out), out
        rows = audit_rows(p, shop.tenant, f"session:{c.session_id}")
        assert len(rows) == 1 and rows[0]["action"] == "session.kick", rows


# Each refused class of text (fd/text.h): whitespace only (ASCII, NEL,
# ideographic, zero-width), a bidi override or isolate, a C1 control.
BAD_TEXT = ["   ", "\u3000", "\u200b\u200b", "a\u202eb", "\u2066x\u2069", "a\u0085b", "\u009bx"]


def test_text_hygiene(p, shop, edges):
    """Every refused text class in every free-text field of playback answers
    INVALID_ARGUMENT naming the field and writes nothing: no session, no
    failure counted, no kick, no audit row."""
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    warm(edges, shop, a.session_id)
    target = f"session:{a.session_id}"
    for bad in BAD_TEXT:
        for who in (shop.r, shop.t):
            msg = expect("INVALID_ARGUMENT", who.lines.KickSession, session_id=a.session_id, reason=bad)
            assert msg.startswith("reason:"), msg
    for e in edges:
        assert beat(e, shop, a.session_id).active
    assert session_row(p, a.session_id) == (False, 0) and audit_rows(p, shop.tenant, target) == []

    addr = ip()
    before = p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line.id}")
    for bad in BAD_TEXT:
        for e in edges:
            msg = expect("INVALID_ARGUMENT", e.AuthorizePlayback, tenant_id=shop.tenant, username=line.username,
                         password=line.password, stream_id=shop.cat.streams[1], client_ip=addr, user_agent=bad)
            assert msg.startswith("user_agent:"), msg
            msg = expect("INVALID_ARGUMENT", e.AuthorizePlayback, tenant_id=shop.tenant, username=line.username,
                         password=line.password, stream_id=shop.cat.streams[1], client_ip=addr, user_agent=VLC,
                         client_session_key=bad)
            assert msg.startswith("client_session_key:"), msg
            # A wrong password with bad text is refused before it is counted.
            expect("INVALID_ARGUMENT", e.AuthorizePlayback, tenant_id=shop.tenant, username=line.username,
                   password="wrong", stream_id=shop.cat.streams[1], client_ip=addr, user_agent=bad)
    assert p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line.id}") == before
    assert p.sql(f"SELECT count(*) FROM frontdesk.playback_failures WHERE key LIKE '%{addr}'") == "0"
    # What is still fine: inner spaces, non-Latin text, an empty reason.
    shop.r.lines.KickSession(session_id=a.session_id, reason="shared \u00e0 Paris \u65e5\u672c")
    assert audit_rows(p, shop.tenant, target)[0]["detail"]["reason"] == "shared \u00e0 Paris \u65e5\u672c"
    allowed(edges[1], shop, line, client_ip=addr, ua="Lavf/60 (\u65e5\u672c)")


def test_list_sessions_subtree_filters_paging(p, edges):
    s = make_shop(p)
    l1, l1b = new_line(s), new_line(s)
    l2, l3 = new_line(s, owner=s.r2), new_line(s, owner=s.r3)
    st = s.cat.streams
    opened = {}
    plan = [(l1, st[0]), (l1, st[1]), (l1b, st[0]), (l2, st[0]), (l2, st[2]), (l3, st[1])]
    for i, (line, stream) in enumerate(plan):
        a = allowed(edges[i % 2], s, line, stream=stream, client_ip=f"198.18.0.{i + 1}", ua=f"Player/{i}")
        opened[a.session_id] = (line, stream, i)
    by_line = lambda *ls: {sid for sid, (line, _, _) in opened.items() if line.id in {x.id for x in ls}}  # noqa: E731

    assert {x.id for x in listed(s.t.lines)} == set(opened)
    assert {x.id for x in listed(s.r.lines)} == by_line(l1, l1b, l2)
    assert {x.id for x in listed(s.r2.lines)} == by_line(l2)
    assert {x.id for x in listed(s.r3.lines)} == by_line(l3)
    # The fields of a session.
    for x in listed(s.r.lines):
        line, stream, i = opened[x.id]
        assert (x.tenant_id, x.line_id, x.username, x.reseller_id, x.stream_id) == \
            (s.tenant, line.id, line.username, line.reseller_id, stream)
        assert (x.client_ip, x.user_agent, x.ended_at, x.end_reason) == \
            (f"198.18.0.{i + 1}", f"Player/{i}", 0, E.SESSION_END_REASON_UNSPECIFIED)
        assert x.started_at > 0 and x.last_seen_at >= x.started_at
    # Filters.
    assert {x.id for x in listed(s.r.lines, line_id=l1.id)} == by_line(l1)
    assert {x.id for x in listed(s.r.lines, stream_id=st[0])} == \
        {sid for sid, (line, stream, _) in opened.items() if stream == st[0] and line.id != l3.id}
    assert {x.id for x in listed(s.r.lines, line_id=l1.id, stream_id=st[1])} == \
        {sid for sid, (line, stream, _) in opened.items() if stream == st[1] and line.id == l1.id}
    assert {x.id for x in listed(s.r.lines, reseller_id=s.r2.id)} == by_line(l2)
    assert {x.id for x in listed(s.t.lines, reseller_id=s.r.id)} == by_line(l1, l1b, l2)
    assert listed(s.r3.lines, line_id=l1.id) == []
    assert listed(s.r2.lines, line_id=l1.id) == []
    assert code_of(s.r2.lines.ListSessions, reseller_id=s.r.id) in ("NOT_FOUND", "PERMISSION_DENIED")
    assert code_of(s.r3.lines.ListSessions, reseller_id=s.r2.id) in ("NOT_FOUND", "PERMISSION_DENIED")
    expect("INVALID_ARGUMENT", s.r.lines.ListSessions, line_id=-1)
    # Paging: pages of 2, in id order, no duplicates, all of them.
    pages, token = [], ""
    while True:
        r = s.t.lines.ListSessions(page_size=2, page_token=token)
        pages.append([x.id for x in r.sessions])
        token = r.next_page_token
        if not token:
            break
        assert len(pages) < 10
    assert [len(pg) for pg in pages] == [2, 2, 2]
    flat = [i for pg in pages for i in pg]
    assert flat == sorted(opened)
    # An ended session leaves the list.
    gone = min(opened)
    edges[0].EndSession(tenant_id=s.tenant, session_id=gone)
    assert {x.id for x in listed(s.t.lines)} == set(opened) - {gone}


# ---------------------------------------------------------------------------
# 8. Isolation and who may call.
# ---------------------------------------------------------------------------

def test_isolation_between_tenants(p, shop, edges):
    other = make_shop(p)
    line = new_line(shop)
    theirs = new_line(other)
    a = allowed(edges[0], shop, line)
    b = allowed(edges[1], other, theirs)
    warm(edges, shop, a.session_id)
    for who in (other.t, other.r):
        expect("NOT_FOUND", who.lines.KickSession, session_id=a.session_id)
        assert code_of(who.lines.KickSession, tenant_id=shop.tenant, session_id=a.session_id) in \
            ("NOT_FOUND", "PERMISSION_DENIED")
        ids = {x.id for x in listed(who.lines)}
        assert a.session_id not in ids
        assert code_of(who.lines.ListSessions, tenant_id=shop.tenant) in ("NOT_FOUND", "PERMISSION_DENIED")
        assert listed(who.lines, line_id=line.id) == []
    assert b.session_id in {x.id for x in listed(other.t.lines)}
    assert a.session_id not in {x.id for x in listed(other.t.lines)}
    # The edge naming tenant B cannot use tenant A's line or sessions.
    for e in edges:
        d = denied(e, other, line, D.DENIAL_REASON_BAD_CREDENTIALS)
        assert not d.HasField("line")
        expect("NOT_FOUND", e.SessionHeartbeat, tenant_id=other.tenant, session_id=a.session_id)
        expect("NOT_FOUND", e.EndSession, tenant_id=other.tenant, session_id=a.session_id)
    for e in edges:
        assert beat(e, shop, a.session_id).active
    assert live(p, line.id) == 1


def test_playback_needs_the_service_scope(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    req = dict(tenant_id=shop.tenant, username=line.username, password=line.password,
               stream_id=shop.cat.streams[1], client_ip=ip(), user_agent=VLC)
    for person in (shop.t, shop.r, p.pa):
        for i in (0, 1):
            cl = person.at(i)
            expect("PERMISSION_DENIED", cl.AuthorizePlayback, **req)
            expect("PERMISSION_DENIED", cl.SessionHeartbeat, tenant_id=shop.tenant, session_id=a.session_id)
            expect("PERMISSION_DENIED", cl.EndSession, tenant_id=shop.tenant, session_id=a.session_id)
    anon = Lines(p.lch[0])
    expect("UNAUTHENTICATED", anon.AuthorizePlayback, **req)
    expect("UNAUTHENTICATED", anon.SessionHeartbeat, tenant_id=shop.tenant, session_id=a.session_id)
    expect("UNAUTHENTICATED", Lines(p.lch[1], "not-a-token").AuthorizePlayback, **req)
    assert live_ids(p, line.id) == {a.session_id}
    assert beat(edges[1], shop, a.session_id).active


# ---------------------------------------------------------------------------
# 9. Bad input.
# ---------------------------------------------------------------------------

def test_bad_input(p, shop, edges):
    line = new_line(shop)
    addr = ip()
    good = dict(tenant_id=shop.tenant, username=line.username, password=line.password,
                stream_id=shop.cat.streams[0], client_ip=addr, user_agent=VLC)
    bad = [
        {"client_ip": "999.1.1.1"}, {"client_ip": ""}, {"client_ip": "abc"}, {"client_ip": "1.2.3.4/32"},
        {"client_ip": "1.2.3"}, {"client_ip": "2001:db8::g"}, {"client_ip": " 1.2.3.4"},
        {"username": ""}, {"username": "u" * 65},
        {"user_agent": "VLC\x01"}, {"user_agent": "a\nb"}, {"user_agent": "a\x7fb"}, {"user_agent": "a" * 513},
        {"stream_id": -1}, {"tenant_id": 0}, {"tenant_id": -3},
        {"password": "p" * 65}, {"output_format": 9}, {"node_id": -1},
    ]
    for e in edges:
        for change in bad:
            expect("INVALID_ARGUMENT", e.AuthorizePlayback, **{**good, **change})
        bad_utf8 = fdapi.replace_bytes(L.AuthorizePlaybackRequest(**{**good, "user_agent": "VLC/3.0-@@"}),
                                       "@@", b"\xff\xfe")
        assert code_of(e.raw, "AuthorizePlayback", bad_utf8) == "INVALID_ARGUMENT"
        expect("INVALID_ARGUMENT", e.SessionHeartbeat, tenant_id=shop.tenant, session_id=0)
        expect("INVALID_ARGUMENT", e.SessionHeartbeat, tenant_id=shop.tenant, session_id=-1)
        expect("INVALID_ARGUMENT", e.SessionHeartbeat, tenant_id=0, session_id=1)
        expect("INVALID_ARGUMENT", e.EndSession, tenant_id=shop.tenant, session_id=0)
        expect("INVALID_ARGUMENT", e.EndSession, tenant_id=0, session_id=1)
    # Nothing was stored: no session, no failure counted.
    assert p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {line.id}") == "0"
    assert p.sql(f"SELECT count(*) FROM frontdesk.playback_failures WHERE key LIKE '%{addr}'") == "0"
    # The limits themselves are fine: 64 characters of username, 512 of user agent.
    a = allowed(edges[0], shop, line, client_ip=addr, ua="a" * 512)
    assert a.session_id > 0
    d = denied(edges[1], shop, line, D.DENIAL_REASON_BAD_CREDENTIALS, username="u" * 64, client_ip=ip())
    assert not d.HasField("line")
    allowed(edges[1], shop, line, client_ip="2001:db8::abcd", stream=0)
    allowed(edges[0], shop, line, client_ip="::ffff:10.1.2.3", stream=0)
