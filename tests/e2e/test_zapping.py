"""Channel zapping on a full line end to end (issue 12, item 1): two linesd
replicas on one database, the HTTP edge's service token, checks of the
sessions in SQL as postgres and through ListSessions.

A player switching channels opens the new stream before it closes the old
one. What must hold (migrations/0007_zapping.sql frontdesk.authorize_playback,
api/frontdesk/v1/lines.proto AuthorizePlaybackResponse.replaced_session_id):
- on a line at its limit, the same client (same client IP and user agent)
  opening another stream is allowed and replaces its own previous session
  (SESSION_END_REASON_REPLACED, announced: the replaced session's heartbeat
  says so at either replica, WatchLineEvents shows the end), under both
  policies; never more than max_connections live sessions, even for an
  instant;
- another client is still refused under REFUSE_NEW (nothing changes) and
  replaces the oldest session under END_OLDEST;
- a session reused through the client session key on another stream keeps
  its id and now plays that stream (stream_id in the row and ListSessions);
- two clients on a 2-connection line, each zapping: each replaces only its
  own session;
- exact across replicas: two switches of the same client arriving at once at
  two replicas (forced together behind a held lock) leave one session.

Processes: one Stack (authd, billingd, two linesd) for the whole file, with
the default 90 s session timeout (so only a replacement can free a slot
within a test) and heartbeats flushed every 0.2 s. Each test uses lines and
client addresses of its own; END_OLDEST has a tenant of its own."""
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdstack  # noqa: E402
import fdtest  # noqa: E402
from fdapi import outcome  # noqa: E402
from fdstack import L, ikey, ns  # noqa: E402

ENV = {"FRONTDESK_HEARTBEAT_FLUSH_MS": "200"}

CHANNELS = 10
ZAP_EVERY = 0.5          # 10 channels in 5 s
PROPAGATION = 1.0        # NOTIFY reaching the other replica's cache
WARM_SETTLE = 0.5        # a line's own events reaching both replicas
EVENT_WITHIN = 8.0       # WatchLineEvents
WATCH_SETTLE = 1.3       # a new watch seen by both replicas' "watched" caches
RACE_ROUNDS = 10

D = L.DenialReason
E = L.SessionEndReason
T = L.LineEventType
REPLACED = E.SESSION_END_REASON_REPLACED
MAXCONN = D.DENIAL_REASON_MAX_CONNECTIONS
TIVI = "TiviMate/4.7"

_ips = itertools.count(1)


def ip():
    """A client address no other check of this file uses."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


# ---------------------------------------------------------------------------
# The platform, shops and small helpers.
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


def make_shop(p, policy=None):
    """A tenant with a reseller r (credits) and a catalog of CHANNELS streams
    in one bouquet; packages of 1 and 2 connections."""
    t = p.tenant()
    r = p.reseller(t, credits=100_000)
    cat = p.catalog(t, streams=CHANNELS, max_connections=1)
    two = t.lines.CreatePackage(name=fdstack.uniq("pkg2"), duration_days=30, credit_cost=10, max_connections=2,
                                bouquet_ids=[cat.bouquet], idempotency_key=ikey()).package
    if policy:
        t.lines.UpdateLinesSettings(connection_limit_policy=policy)
        assert t.lines.GetLinesSettings().settings.connection_limit_policy == policy
    return ns(t=t, r=r, cat=cat, one=cat.package, two=two, tenant=t.tenant)


@pytest.fixture(scope="module")
def shop(p):
    return make_shop(p)


@pytest.fixture(scope="module")
def oldest_shop(p):
    return make_shop(p, policy=L.CONNECTION_LIMIT_POLICY_END_OLDEST)


def new_line(s, package=None):
    return s.r.lines.CreateLine(reseller_id=s.r.id, package_id=(package or s.one).id,
                                idempotency_key=ikey()).line


def authorize(edge, s, line, stream, client_ip, ua=TIVI, **kw):
    return edge.AuthorizePlayback(tenant_id=s.tenant, username=line.username, password=line.password,
                                  stream_id=stream, client_ip=client_ip, user_agent=ua, **kw)


def allowed(edge, s, line, stream, client_ip, **kw):
    a = authorize(edge, s, line, stream, client_ip, **kw)
    assert a.allowed, f"denied {D.Name(a.denial_reason)}: {a.message}"
    return a


def denied(edge, s, line, stream, client_ip, reason=MAXCONN, **kw):
    a = authorize(edge, s, line, stream, client_ip, **kw)
    assert not a.allowed and a.denial_reason == reason, \
        f"want {D.Name(reason)}, got allowed={a.allowed} {D.Name(a.denial_reason)}"
    assert a.session_id == 0 and a.replaced_session_id == 0
    return a


def beat(edge, s, sid):
    return edge.SessionHeartbeat(tenant_id=s.tenant, session_id=sid)


def ended_at(edge, s, sid, reason=REPLACED, within=PROPAGATION):
    """Polls heartbeats at `edge` until one says the session ended (a cache
    never told keeps answering active, so a missed end still fails)."""
    start = time.time()
    while True:
        h = beat(edge, s, sid)
        if not h.active:
            assert h.end_reason == reason, f"session {sid}: ended {E.Name(h.end_reason)}, want {E.Name(reason)}"
            return time.time() - start
        assert time.time() - start < within, f"session {sid}: heartbeat still active after {within} s"
        time.sleep(0.02)


def warm(edges, s, *sids, settle=True):
    """Both replicas hold the sessions in their heartbeat caches (and, with
    settle, still do once the line's own events have surely arrived)."""
    for pause in ((WARM_SETTLE, 0) if settle else (0,)):
        for e in edges:
            for sid in sids:
                assert beat(e, s, sid).active, f"session {sid} not active"
        time.sleep(pause)


def live_ids(p, line_id):
    return {int(x) for x in p.sql(f"SELECT id FROM frontdesk.sessions WHERE line_id = {line_id}"
                                  " AND ended_at IS NULL").split()}


def rows_of(p, line_id):
    """Every session row of the line, as (id, stream, ended, reason): the
    before/after snapshot of a refusal."""
    return p.rows(f"SELECT id, stream_id, ended_at IS NOT NULL, end_reason FROM frontdesk.sessions"
                  f" WHERE line_id = {line_id} ORDER BY id")


def session_row(p, sid):
    r = p.rows(f"SELECT ended_at IS NOT NULL, end_reason, stream_id FROM frontdesk.sessions WHERE id = {sid}")
    assert r, f"no row for session {sid}"
    return r[0][0] == "t", int(r[0][1]), int(r[0][2])


def listed(who, **kw):
    """Every live session ListSessions shows `who`."""
    got, token = [], ""
    for _ in range(100):
        r = who.ListSessions(page_size=100, page_token=token, **kw)
        got.extend(r.sessions)
        token = r.next_page_token
        if not token:
            return got
    raise AssertionError("ListSessions never ended")


def wait_until(pred, timeout, what, interval=0.05):
    start = time.time()
    while not pred():
        assert time.time() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(interval)


class LiveMax:
    """Samples the line's live sessions in SQL from a thread, as fast as psql
    goes, and keeps the most seen at once: "never more than max", between the
    checks too."""

    def __init__(self, p, line_id):
        self.p, self.line_id, self.most, self.samples = p, line_id, 0, 0
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_.is_set():
            n = int(self.p.sql(f"SELECT count(*) FROM frontdesk.sessions WHERE line_id = {self.line_id}"
                               " AND ended_at IS NULL"))
            self.most = max(self.most, n)
            self.samples += 1

    def stop(self):
        self.stop_.set()
        self.thread.join(10)
        return self.most


class Gate:
    """A statement run by postgres in a transaction held open: the
    authorizations that need what it holds wait behind it and all go on at
    once when it commits (a race made certain instead of likely)."""

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

    def wait_for(self, n):
        q = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
             " AND wait_event_type = 'Lock' AND query SIMILAR TO '%(authorize_playback|open_session)\\(%'")
        wait_until(lambda: int(self.p.sql(q)) >= n, 5.0, f"{n} authorizations waiting behind the gate", 0.02)

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()


# New sessions wait (INSERT and UPDATE of sessions need a lock SHARE mode
# refuses): each authorization waits inside the line's critical section or
# for its advisory lock. / All wait at the stream check, just before the
# connection limit, and go on together.
SESSIONS_GATE = "LOCK TABLE frontdesk.sessions IN SHARE MODE"
STREAMS_GATE = "LOCK TABLE frontdesk.streams IN ACCESS EXCLUSIVE MODE"


def race(p, calls, gate=None):
    """The calls at the same moment (threads behind a barrier), with a gate
    also all waiting behind it until every one is there. (code, response)
    of each, in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)
    g = Gate(p, gate) if gate else None

    def run(i):
        barrier.wait()
        out[i] = outcome(calls[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    try:
        for th in threads:
            th.start()
        if g:
            g.wait_for(len(calls))
    finally:
        if g:
            g.release()
    for th in threads:
        th.join(30)
    assert all(o is not None for o in out), "a call did not finish"
    return out


class Watch:
    """One WatchLineEvents stream read by a thread into a queue."""

    def __init__(self, lines, **fields):
        self.q = queue.Queue()
        self.call = lines.watch(**fields)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for r in self.call:
                self.q.put(r.event)
        except grpc.RpcError:
            pass

    def until(self, pred, timeout=EVENT_WITHIN):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            assert left > 0, f"no matching event within {timeout} s"
            try:
                e = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if pred(e):
                return e

    def cancel(self):
        self.call.cancel()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# 1. One client zapping on a 1-connection line.
# ---------------------------------------------------------------------------

def test_zapping_ten_channels_in_five_seconds_across_replicas(p, shop, edges):
    """Ten channels, one every 0.5 s, alternating replicas, on a line of one
    connection (REFUSE_NEW): every switch allowed and replacing the session
    before it; one live session after every switch (SQL and ListSessions) and
    at every sample in between; the replaced session's heartbeat says
    REPLACED at the replica that replaced it at once and at the other within
    PROPAGATION, both having cached it."""
    s = shop
    line = new_line(s)
    me = ip()
    time.sleep(WARM_SETTLE)        # line.created has reached both replicas: caches stay
    sampler = LiveMax(p, line.id)
    try:
        t0 = time.time()
        first = allowed(edges[0], s, line, s.cat.streams[0], me)
        assert not first.session_reused and first.replaced_session_id == 0
        warm(edges, s, first.session_id, settle=False)
        prev, told = first, []
        for i in range(1, CHANNELS):
            time.sleep(max(0.0, t0 + i * ZAP_EVERY - time.time()))
            k = i % 2
            stream = s.cat.streams[i]
            a = allowed(edges[k], s, line, stream, me)
            last = time.time()
            assert not a.session_reused and a.session_id != prev.session_id, f"switch {i}"
            assert a.replaced_session_id == prev.session_id, f"switch {i}: replaced {a.replaced_session_id}"
            # The rows in one query: the one live session, the one just replaced.
            rows = p.rows(f"SELECT id, stream_id, end_reason FROM frontdesk.sessions WHERE line_id = {line.id}"
                          f" AND (ended_at IS NULL OR id = {prev.session_id}) ORDER BY ended_at IS NULL")
            assert rows == [[str(prev.session_id), str(s.cat.streams[i - 1]), str(REPLACED)],
                            [str(a.session_id), str(stream), "0"]], f"switch {i}: {rows}"
            got = listed(s.r.lines, line_id=line.id)
            assert [(x.id, x.stream_id) for x in got] == [(a.session_id, stream)], f"switch {i}"
            # The replica that replaced it answers at once; the other is told.
            h = beat(edges[k], s, prev.session_id)
            assert not h.active and h.end_reason == REPLACED, f"switch {i}: replica {k} still plays it"
            told.append(ended_at(edges[1 - k], s, prev.session_id))
            warm(edges, s, a.session_id, settle=False)
            prev = a
        took = last - t0
    finally:
        most = sampler.stop()
    print(f"zapping: {CHANNELS} channels in {took:.2f} s, the other replica told within"
          f" {max(told) * 1000:.0f} ms at most; at most {most} live in {sampler.samples} samples")
    assert took < CHANNELS * ZAP_EVERY, f"{CHANNELS} channels took {took:.2f} s (the checks between are slow?)"
    assert most == 1 and sampler.samples > 0, f"{most} live sessions seen at once ({sampler.samples} samples)"
    ended = p.rows(f"SELECT count(*), count(*) FILTER (WHERE end_reason = {REPLACED}) FROM frontdesk.sessions"
                   f" WHERE line_id = {line.id} AND ended_at IS NOT NULL")
    assert ended == [[str(CHANNELS - 1), str(CHANNELS - 1)]]
    for e in edges:
        assert beat(e, s, prev.session_id).active


def test_another_device_still_refused_across_replicas(p, shop, edges):
    """REFUSE_NEW: on a 1-connection line in use, another address, or the
    same address with another player, is refused at either replica, on any
    stream, and nothing changes; the owner's own zapping goes on. Then the
    owner's switch and a stranger's request at once at two replicas (held
    together at the stream check, so either may reach the line's lock
    first): the switch is allowed, the stranger refused, one session."""
    s = shop
    line = new_line(s)
    me = ip()
    a = allowed(edges[0], s, line, s.cat.streams[0], me)
    before = rows_of(p, line.id)
    for k in (0, 1):
        for stream in (s.cat.streams[0], s.cat.streams[1]):
            denied(edges[k], s, line, stream, ip())
            denied(edges[k], s, line, stream, me, ua="Kodi/20")
    assert rows_of(p, line.id) == before, "a refusal changed the line's sessions"
    for e in edges:
        assert beat(e, s, a.session_id).active
    # The owner zaps (at the other replica): still allowed.
    b = allowed(edges[1], s, line, s.cat.streams[1], me)
    assert b.replaced_session_id == a.session_id and live_ids(p, line.id) == {b.session_id}

    cur = b
    for n in range(RACE_ROUNDS):
        stranger = ip()
        stream = s.cat.streams[(n + 2) % CHANNELS]
        out = race(p, [lambda k=n % 2, st=stream: authorize(edges[k], s, line, st, me),
                       lambda k=(n + 1) % 2, st=stream: authorize(edges[k], s, line, st, stranger)],
                   gate=STREAMS_GATE if n % 2 == 0 else None)
        assert all(code == "OK" for code, _ in out), out
        (_, mine), (_, theirs) = out
        assert mine.allowed and mine.replaced_session_id == cur.session_id, f"round {n}: {mine}"
        assert not theirs.allowed and theirs.denial_reason == MAXCONN and theirs.session_id == 0, f"round {n}"
        assert live_ids(p, line.id) == {mine.session_id}, f"round {n}"
        cur = mine


# ---------------------------------------------------------------------------
# 2. END_OLDEST.
# ---------------------------------------------------------------------------

def test_end_oldest_same_client_replaces_its_own(p, oldest_shop, edges):
    """END_OLDEST, 2 connections: the same client's switch replaces its own
    session even when another client's is older; another client replaces
    the oldest."""
    s = oldest_shop
    line = new_line(s, s.two)
    x, y, z = ip(), ip(), ip()
    sy = allowed(edges[0], s, line, s.cat.streams[0], y)          # the oldest
    sx = allowed(edges[1], s, line, s.cat.streams[0], x)
    warm(edges, s, sy.session_id, sx.session_id)
    # x zaps twice, once at each replica: its own session each time.
    sx2 = allowed(edges[0], s, line, s.cat.streams[1], x)
    assert sx2.replaced_session_id == sx.session_id, "x's switch must replace x's session, not the oldest"
    assert live_ids(p, line.id) == {sy.session_id, sx2.session_id}
    ended_at(edges[1], s, sx.session_id)
    sx3 = allowed(edges[1], s, line, s.cat.streams[2], x)
    assert sx3.replaced_session_id == sx2.session_id
    assert live_ids(p, line.id) == {sy.session_id, sx3.session_id}
    assert beat(edges[0], s, sy.session_id).active
    # Another client: the oldest goes (y's), at either replica's heartbeat.
    sz = allowed(edges[0], s, line, s.cat.streams[3], z)
    assert sz.replaced_session_id == sy.session_id
    assert live_ids(p, line.id) == {sx3.session_id, sz.session_id}
    assert session_row(p, sy.session_id)[:2] == (True, REPLACED)
    for e in edges:
        ended_at(e, s, sy.session_id)
    # The same address with another player is another client: the oldest (x's) goes.
    sw = allowed(edges[1], s, line, s.cat.streams[4], z, ua="Kodi/20")
    assert sw.replaced_session_id == sx3.session_id
    assert live_ids(p, line.id) == {sz.session_id, sw.session_id}


# ---------------------------------------------------------------------------
# 3. The client session key.
# ---------------------------------------------------------------------------

def test_client_key_switching_streams_updates_stream_id(p, shop, edges):
    """A session reused through the client session key on another stream
    (at the other replica, even from another address and player) keeps its
    id and plays the new stream: the row, ListSessions and its stream
    filter say so."""
    s = shop
    line = new_line(s)
    key = "flu-" + uuid.uuid4().hex[:12]
    a = allowed(edges[0], s, line, s.cat.streams[0], ip(), client_session_key=key)
    for i, stream in enumerate(s.cat.streams[1:4]):
        b = allowed(edges[(i + 1) % 2], s, line, stream, ip(), ua=f"Flussonic/{i}", client_session_key=key)
        assert b.session_reused and b.session_id == a.session_id and b.replaced_session_id == 0
        assert session_row(p, a.session_id) == (False, 0, stream)
        got = listed(s.r.lines, line_id=line.id)
        assert [(x.id, x.stream_id) for x in got] == [(a.session_id, stream)]
        assert [x.id for x in listed(s.r.lines, line_id=line.id, stream_id=stream)] == [a.session_id]
        assert listed(s.r.lines, line_id=line.id, stream_id=s.cat.streams[0]) == []
    # Another key from elsewhere is another client: refused, nothing changes.
    before = rows_of(p, line.id)
    denied(edges[1], s, line, s.cat.streams[5], ip(), client_session_key="flu-other")
    assert rows_of(p, line.id) == before
    for e in edges:
        assert beat(e, s, a.session_id).active


# ---------------------------------------------------------------------------
# 4. Two clients zapping on a 2-connection line.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["refuse_new", "end_oldest"])
def test_two_clients_each_replace_their_own(p, shop, oldest_shop, edges, policy):
    """Two clients on a line of two connections, zapping in turns at
    alternating replicas: each switch replaces the switching client's own
    session, never the other's (even when the other's is the oldest); two
    live sessions throughout."""
    s = shop if policy == "refuse_new" else oldest_shop
    line = new_line(s, s.two)
    clients = [ip(), ip()]
    sampler = LiveMax(p, line.id)
    try:
        cur = [allowed(edges[i], s, line, s.cat.streams[i], c) for i, c in enumerate(clients)]
        last = [0, 1]          # whose session is newer (session ids are not in time order)
        # Each client zaps twice in a row at times: its own session is then
        # the newer one, so "the oldest" would be the other's.
        for n, who in enumerate([0, 0, 1, 1, 0, 1, 1, 0]):
            stream = s.cat.streams[(n + 2) % CHANNELS]
            a = allowed(edges[n % 2 if n < 4 else 1 - n % 2], s, line, stream, clients[who])
            assert a.replaced_session_id == cur[who].session_id, \
                f"switch {n} of client {who}: replaced {a.replaced_session_id}, its own is {cur[who].session_id}"
            cur[who] = a
            last = [1 - who, who]
            assert live_ids(p, line.id) == {c.session_id for c in cur}, f"switch {n}"
            assert {x.id for x in listed(s.r.lines, line_id=line.id)} == {c.session_id for c in cur}
    finally:
        most = sampler.stop()
    assert most <= 2, f"{most} live sessions seen at once on a line of two"
    # A third client: refused (REFUSE_NEW) or replaces the oldest (END_OLDEST).
    if policy == "refuse_new":
        before = rows_of(p, line.id)
        denied(edges[0], s, line, s.cat.streams[0], ip())
        assert rows_of(p, line.id) == before
    else:
        oldest = cur[last[0]]
        a = allowed(edges[0], s, line, s.cat.streams[0], ip())
        assert a.replaced_session_id == oldest.session_id


# ---------------------------------------------------------------------------
# 5. Exact across replicas.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["refuse_new", "end_oldest"])
def test_same_client_switches_at_once_leave_one_session(p, shop, oldest_shop, edges, policy):
    """Two switches of the same client at the same moment at two replicas
    (held together behind a lock, the line's critical section entered one
    after the other): both allowed, one live session, the other new one and
    the old one REPLACED at both replicas. Same stream twice: one new
    session, the other answer reuses it."""
    s = shop if policy == "refuse_new" else oldest_shop
    for n in range(RACE_ROUNDS):
        line = new_line(s)
        me = ip()
        old = allowed(edges[n % 2], s, line, s.cat.streams[0], me)
        warm(edges, s, old.session_id, settle=n == 0)
        same = n % 3 == 2
        st = [s.cat.streams[1], s.cat.streams[1 if same else 2]]
        out = race(p, [lambda k=k: authorize(edges[k], s, line, st[k], me) for k in (0, 1)],
                   gate=SESSIONS_GATE if n % 2 == 0 else STREAMS_GATE)
        assert all(code == "OK" and r.allowed for code, r in out), f"round {n}: {out}"
        ids = {r.session_id for _, r in out}
        live = live_ids(p, line.id)
        assert len(live) == 1 and live <= ids, f"round {n}: live {live}, answers {ids}"
        if same:
            assert len(ids) == 1 and sorted(r.session_reused for _, r in out) == [False, True], f"round {n}"
            assert session_row(p, old.session_id)[:2] == (True, REPLACED)
            gone = {old.session_id}
        else:
            assert len(ids) == 2 and not any(r.session_reused for _, r in out), f"round {n}"
            replaced = {r.replaced_session_id for _, r in out}
            first = (ids - live).pop()
            assert replaced == {old.session_id, first}, f"round {n}: replaced {replaced}"
            gone = {old.session_id, first}
        for sid in gone:
            assert session_row(p, sid)[:2] == (True, REPLACED), f"round {n}: session {sid}"
            for e in edges:
                ended_at(e, s, sid)
        for e in edges:
            assert beat(e, s, next(iter(live))).active


# ---------------------------------------------------------------------------
# 6. The end is announced.
# ---------------------------------------------------------------------------

def test_replacement_is_announced_to_watchers(p, shop, edges):
    """WatchLineEvents at replica 1 sees the zap made through replica 0: the
    old session's end (REPLACED) and the new one's start."""
    s = shop
    line = new_line(s)
    me = ip()
    w = Watch(s.r.at(1), line_id=line.id,
              types=[T.Value("LINE_EVENT_TYPE_SESSION_STARTED"), T.Value("LINE_EVENT_TYPE_SESSION_ENDED")])
    try:
        time.sleep(WATCH_SETTLE)
        a = allowed(edges[0], s, line, s.cat.streams[0], me)
        b = allowed(edges[0], s, line, s.cat.streams[1], me)
        assert b.replaced_session_id == a.session_id
        e = w.until(lambda e: e.type == T.Value("LINE_EVENT_TYPE_SESSION_ENDED") and e.session.id == a.session_id)
        assert e.line_id == line.id and e.session.end_reason == REPLACED and e.session.ended_at > 0
        assert e.session.stream_id == s.cat.streams[0]
        e = w.until(lambda e: e.type == T.Value("LINE_EVENT_TYPE_SESSION_STARTED") and e.session.id == b.session_id)
        assert e.session.stream_id == s.cat.streams[1] and e.session.ended_at == 0
    finally:
        w.cancel()
