"""The HTTP edge's own LinesService methods end to end, through two linesd
replicas on one database: GetLineChannels, ReportSessions and
WatchPlaybackEvents (api/frontdesk/v1/lines.proto), and the failure limits'
keys (IPv6 counted per /64).

What must hold:
- GetLineChannels: the enabled live streams of the line's bouquets in
  bouquet order, a stream in two bouquets once at its first place, movies,
  series and disabled streams left out; categories in order of first
  appearance with ids that stay the same across calls and across changes of
  other streams (migrations/0017_edge_lines.sql, stream_categories);
  bouquet_ids, allowed_output_formats, the catalog version; only when
  AuthorizePlayback with stream 0 would allow the line: a wrong password, an
  unknown user and another tenant's line look exactly alike, expired,
  banned and disabled lines are refused with their reason, failures count
  toward the same limits as AuthorizePlayback's;
- the catalog version: bumped once by each change of streams, bouquets
  (their stream lists too) and packages, announced as CATALOG_CHANGED;
- ReportSessions keeps sessions alive past the session timeout without any
  SessionHeartbeat, reports kicked, closed, revoked, expired, unknown and
  other tenants' sessions as ended (with their reason, UNSPECIFIED when
  unknown), refuses bad input naming `sessions`;
- WatchPlaybackEvents: ready first; a kick is SESSION_ENDED within 1 s;
  ban, disable, expiry, password change and delete are LINE_REVOKED (and
  SESSION_ENDED of the line's sessions); a tenant's suspension is one
  LINE_REVOKED with line_id 0, a reseller's one per line of its subtree;
  caused at one replica, heard at the other; a lost LISTEN connection ends
  the stream with UNAVAILABLE;
- each method needs its own scope and a service token: people's tokens,
  linesd's service token and an API key that somehow holds the scope are
  PERMISSION_DENIED;
- failed authorizations are counted per (username, source) and per source,
  the source of an IPv6 address being its /64 (IPv4 keys unchanged).

Processes: one Stack (authd, billingd, two linesd) for the file, with a fast
sweep (0.5 s), a 5 s session timeout, heartbeats flushed every 0.2 s and low
failure limits. Tests that suspend something use a tenant of their own."""
import itertools
import os
import queue
import statistics
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdstack  # noqa: E402
from fdapi import Lines, bearer, code_of, expect  # noqa: E402
from fdstack import A, C, L, ikey, ns, uniq  # noqa: E402

SWEEP_MS = 500
SESSION_TIMEOUT = 5
FLUSH_MS = 200
FAIL_MAX_USER = 5
FAIL_MAX_IP = 20

ENV = {
    "FRONTDESK_LINESD_SWEEP_MS": str(SWEEP_MS),
    "FRONTDESK_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
    "FRONTDESK_HEARTBEAT_FLUSH_MS": str(FLUSH_MS),
    "FRONTDESK_PLAYBACK_FAIL_MAX_USER": str(FAIL_MAX_USER),
    "FRONTDESK_PLAYBACK_FAIL_MAX_IP": str(FAIL_MAX_IP),
}

WITHIN = 1.0             # the contract: an event within 1 s of its change
PROPAGATION = 1.0        # a change reaching the other replica's heartbeat cache (NOTIFY)
WAIT = 8.0               # longest wait for anything else
QUIET = 1.5

D = L.DenialReason
E = L.SessionEndReason
PE = L.PlaybackEventType
LIVE, MOVIE, SERIES = L.STREAM_KIND_LIVE, L.STREAM_KIND_MOVIE, L.STREAM_KIND_SERIES
VLC = "VLC/3.0"

_ips = itertools.count(1)
_nets = itertools.count(1)


def ip():
    """An IPv4 client address no other check uses (10.0.0.0/8)."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def net64():
    """An IPv6 /64 no other check uses, as its prefix ('2001:db8:7:12:')."""
    n = next(_nets)
    return f"2001:db8:{n >> 16:x}:{n & 0xffff:x}:"


# ---------------------------------------------------------------------------
# The platform.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_replicas=2, linesd_env=ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for k, c in codes.items() if k.startswith("linesd")), codes


@pytest.fixture(scope="module")
def edges(p):
    """The edge's Lines clients (edged's service token) at replica 0 and 1."""
    return [p.edge(0), p.edge(1)]


def make_shop(p, **catalog):
    """A tenant (admin t) with reseller r, its sub-reseller r2, a sibling
    r3 and a ready catalog (3 live streams in one bouquet, a package)."""
    t = p.tenant()
    r = p.reseller(t, credits=100_000)
    r2 = p.reseller(t, creator=r, parent_id=r.id, credits=0)
    p.mint(t, r2.id, 100_000)
    r3 = p.reseller(t, credits=100_000)
    cat = p.catalog(t, **catalog)
    return ns(t=t, r=r, r2=r2, r3=r3, cat=cat, tenant=t.tenant)


@pytest.fixture(scope="module")
def shop(p):
    return make_shop(p)


def new_line(s, owner=None, package=None, **kw):
    owner = owner or s.r
    return owner.lines.CreateLine(reseller_id=owner.id, package_id=(package or s.cat.package).id,
                                  idempotency_key=ikey(), **kw).line


def channels(edge, s, line, password=None, username=None, client_ip=None, ua=VLC, tenant=None):
    return edge.GetLineChannels(tenant_id=tenant or s.tenant,
                                username=line.username if username is None else username,
                                password=line.password if password is None else password,
                                client_ip=client_ip or ip(), user_agent=ua)


def authorize(edge, s, line, stream=None, client_ip=None, ua=VLC, password=None, username=None, **kw):
    return edge.AuthorizePlayback(
        tenant_id=s.tenant, username=line.username if username is None else username,
        password=line.password if password is None else password,
        stream_id=s.cat.streams[0] if stream is None else stream,
        client_ip=client_ip or ip(), user_agent=ua, **kw)


def allowed(edge, s, line, **kw):
    a = authorize(edge, s, line, **kw)
    assert a.allowed, f"denied {D.Name(a.denial_reason)}: {a.message}"
    return a


def report(edge, *pairs):
    """ReportSessions of (tenant, session) pairs; {(tenant, session): end_reason} of those ended."""
    r = edge.ReportSessions(sessions=[L.SessionReport(tenant_id=t, session_id=s) for t, s in pairs])
    return {(x.tenant_id, x.session_id): x.end_reason for x in r.ended}, r


def beat(edge, s, sid):
    return edge.SessionHeartbeat(tenant_id=s.tenant, session_id=sid)


def session_row(p, sid):
    """(ended, end_reason) of a session row."""
    r = p.rows(f"SELECT ended_at IS NOT NULL, end_reason FROM frontdesk.sessions WHERE id = {sid}")
    assert r, f"no row for session {sid}"
    return r[0][0] == "t", int(r[0][1])


def catalog_version(p, tenant):
    return int(p.sql(f"SELECT coalesce((SELECT version FROM frontdesk.catalog_versions"
                     f" WHERE tenant_id = {tenant}), 0)"))


def wait_until(pred, timeout, what, interval=0.05):
    start = time.time()
    while not pred():
        assert time.time() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(interval)
    return time.time() - start


class PlaybackWatch:
    """One WatchPlaybackEvents stream, read by a thread into a queue with
    each message's arrival time (time.monotonic())."""

    def __init__(self, channel, token):
        stub = channel.unary_stream(
            "/frontdesk.v1.LinesService/WatchPlaybackEvents",
            request_serializer=L.WatchPlaybackEventsRequest.SerializeToString,
            response_deserializer=L.WatchPlaybackEventsResponse.FromString)
        self.q = queue.Queue()
        self.backlog = []              # events received and not yet matched
        self.call = stub(L.WatchPlaybackEventsRequest(), metadata=bearer(token) if token else None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for r in self.call:
                self.q.put(("msg", r, time.monotonic()))
            self.q.put(("end", "OK", ""))
        except grpc.RpcError as e:
            self.q.put(("end", e.code().name, e.details()))

    def ready(self, timeout=WAIT):
        item = self.q.get(timeout=timeout)
        assert item[0] == "msg", f"stream ended before ready: {item[1:]}"
        assert item[1].ready and not item[1].HasField("event"), f"first message: {item[1]}"
        return self

    def _take(self, timeout):
        """The next message (kind, response, arrival) or None after timeout."""
        try:
            item = self.q.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None
        assert item[0] == "msg", f"stream ended: {item[1:]}"
        assert not item[1].ready, "ready again"
        return item

    def until(self, pred, timeout=WAIT):
        """(event, arrival, the events kept so far) of the first event pred
        accepts, among those kept from earlier calls first (events arrive in
        commit order: a line's sessions end before the line is revoked)."""
        for i, (ev, arrival) in enumerate(self.backlog):
            if pred(ev):
                del self.backlog[i]
                return ev, arrival, self.backlog
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, ("no matching event within %s s; kept %s" % (timeout, [
                (PE.Name(e.type), e.tenant_id, e.line_id, e.session_id) for e, _ in self.backlog]))
            item = self._take(left)
            if item is None:
                continue
            if pred(item[1].event):
                return item[1].event, item[2], self.backlog
            self.backlog.append((item[1].event, item[2]))

    def none_of(self, pred, timeout=QUIET):
        """Asserts no event pred accepts arrived or arrives within timeout."""
        for ev, _ in self.backlog:
            assert not pred(ev), f"unexpected: {ev}"
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            item = self._take(left)
            if item is None:
                return
            assert not pred(item[1].event), f"unexpected: {item[1].event}"
            self.backlog.append((item[1].event, item[2]))

    def ended(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the stream did not end"
            try:
                item = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if item[0] == "end":
                return item[1], item[2]

    def cancel(self):
        self.call.cancel()
        self.thread.join(5)


def watch(p, replica):
    return PlaybackWatch(p.lch[replica], p.service_token("edged", "linesd")).ready()


def is_ended(tenant, sid, reason=None):
    return lambda e: (e.type == PE.PLAYBACK_EVENT_TYPE_SESSION_ENDED and e.tenant_id == tenant
                      and e.session_id == sid and (reason is None or e.end_reason == reason))


def is_revoked(tenant, line_id):
    return lambda e: e.type == PE.PLAYBACK_EVENT_TYPE_LINE_REVOKED and e.tenant_id == tenant and e.line_id == line_id


def within(arrival, after, what):
    """The event arrived within WITHIN seconds of `after` (monotonic time
    when the change's call returned)."""
    took = arrival - after
    assert took <= WITHIN, f"{what}: arrived {took:.3f} s after the change (at most {WITHIN})"


# ---------------------------------------------------------------------------
# 1. GetLineChannels.
# ---------------------------------------------------------------------------

def stream(t, name, kind=LIVE, category="", **kw):
    return t.lines.CreateStream(name=name, kind=kind, category=category, idempotency_key=ikey(), **kw).stream


def test_channels_order_dedup_and_kinds(p, edges):
    s = make_shop(p)
    t = s.t
    a = stream(t, "Alpha", category="News", number=7, logo_url="https://logo.example/a.png", epg_channel="alpha.tv")
    b = stream(t, "Bravo", category="Sports", number=3)
    c = stream(t, "Charlie film", kind=MOVIE, category="Films")
    d = stream(t, "Delta off", category="Docs")
    e = stream(t, "Echo", category="")
    f = stream(t, "Foxtrot", category="News")
    g = stream(t, "Golf series", kind=SERIES, category="Shows")
    t.lines.UpdateStream(stream_id=d.id, disabled=fdstack.C.OptionalBool(value=True))
    b1 = t.lines.CreateBouquet(name=uniq("b1"), stream_ids=[b.id, a.id, c.id, d.id], idempotency_key=ikey()).bouquet
    b2 = t.lines.CreateBouquet(name=uniq("b2"), stream_ids=[e.id, a.id, g.id, f.id, b.id],
                               idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name=uniq("pkg"), duration_days=30, max_connections=2, bouquet_ids=[b1.id, b2.id],
                                allowed_output_formats=[C.OUTPUT_FORMAT_M3U8, C.OUTPUT_FORMAT_TS],
                                idempotency_key=ikey()).package
    line = new_line(s, package=pkg)
    for edge in edges:
        r = channels(edge, s, line)
        assert r.authorized and r.denial_reason == D.DENIAL_REASON_UNSPECIFIED
        assert [ch.stream_id for ch in r.channels] == [b.id, a.id, e.id, f.id], \
            "bouquet order, a stream once at its first place, no movie, series or disabled stream"
        assert list(r.bouquet_ids) == [b1.id, b2.id]
        assert list(r.allowed_output_formats) == [C.OUTPUT_FORMAT_M3U8, C.OUTPUT_FORMAT_TS]
        assert [k.name for k in r.categories] == ["Sports", "News"], "categories in order of first appearance"
        ids = {k.name: k.id for k in r.categories}
        assert all(i > 0 for i in ids.values()) and len(set(ids.values())) == 2
        by = {ch.stream_id: ch for ch in r.channels}
        assert by[a.id].name == "Alpha" and by[a.id].number == 7 and by[a.id].logo_url == "https://logo.example/a.png"
        assert by[a.id].epg_channel == "alpha.tv" and by[a.id].added_at == a.created_at
        assert by[a.id].category_id == ids["News"] == by[f.id].category_id
        assert by[b.id].category_id == ids["Sports"] and by[b.id].number == 3
        assert by[e.id].category_id == 0, "no category: 0"
        assert r.catalog_version == catalog_version(p, s.tenant) > 0

    # The ids are the tenant's and stay put: across calls, across changes of
    # other streams (a rename, a new category elsewhere) and while a name is used.
    before = {k.name: k.id for k in channels(edges[0], s, line).categories}
    t.lines.UpdateStream(stream_id=c.id, name="Charlie renamed", category=fdstack.C.OptionalString(value="Cinema"))
    t.lines.UpdateStream(stream_id=e.id, name="Echo renamed")
    stream(t, "Hotel", category="Weather")
    t.lines.UpdateStream(stream_id=f.id, category=fdstack.C.OptionalString(value="Sports"))
    for edge in edges:
        r = channels(edge, s, line)
        now = {k.name: k.id for k in r.categories}
        assert now == before, (now, before)
        by = {ch.stream_id: ch for ch in r.channels}
        assert by[f.id].category_id == before["Sports"] and by[e.id].name == "Echo renamed"
    # A name moved away and back keeps its id; the table agrees.
    t.lines.UpdateStream(stream_id=a.id, category=fdstack.C.OptionalString(value="Sports"))
    r = channels(edges[1], s, line)
    assert [k.name for k in r.categories] == ["Sports"]
    t.lines.UpdateStream(stream_id=a.id, category=fdstack.C.OptionalString(value="News"))
    r = channels(edges[0], s, line)
    assert {k.name: k.id for k in r.categories} == before
    rows = dict((n, int(i)) for n, i in p.rows(f"SELECT name, id FROM frontdesk.stream_categories"
                                                 f" WHERE tenant_id = {s.tenant}"))
    assert rows["News"] == before["News"] and rows["Sports"] == before["Sports"]
    assert set(rows) == {"News", "Sports", "Films", "Docs", "Shows", "Cinema", "Weather"}
    # Another tenant's categories are its own (same names, other ids).
    o = make_shop(p)
    assert [k.name for k in channels(edges[0], o, new_line(o)).categories] == ["News"]
    other_news = int(p.sql(f"SELECT id FROM frontdesk.stream_categories WHERE tenant_id = {o.tenant}"
                           " AND name = 'News'"))
    assert other_news != before["News"]
    # Line bouquets in another order give another order.
    line2 = new_line(s, package=pkg, bouquet_ids=[b2.id, b1.id])
    r = channels(edges[1], s, line2)
    assert [ch.stream_id for ch in r.channels] == [e.id, a.id, f.id, b.id]
    assert [k.name for k in r.categories] == ["News", "Sports"]


def test_channels_refused_like_authorize(p, edges):
    s = make_shop(p)
    line = new_line(s)
    other = make_shop(p)
    foreign = new_line(other)
    addr = ip()
    wrong = channels(edges[0], s, line, password=line.password + "x", client_ip=addr)
    unknown = channels(edges[1], s, line, username=uniq("nobody"), client_ip=addr)
    # Another tenant's line, with its right credentials, asked in this tenant.
    elsewhere = channels(edges[0], s, foreign, client_ip=addr)
    for r in (wrong, unknown, elsewhere):
        assert r.SerializeToString() == wrong.SerializeToString(), "indistinguishable"
        assert not r.authorized and r.denial_reason == D.DENIAL_REASON_BAD_CREDENTIALS
        assert not r.channels and not r.categories and not r.bouquet_ids and r.catalog_version == 0
    assert channels(edges[0], other, foreign).authorized
    # The line's own states.
    banned, disabled, expired = new_line(s), new_line(s), new_line(s)
    s.t.lines.SetLineStatus(line_id=banned.id, status=L.LINE_STATUS_BANNED)
    s.t.lines.SetLineStatus(line_id=disabled.id, status=L.LINE_STATUS_DISABLED)
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() - interval '1 second' WHERE id = {expired.id}")
    locked = new_line(s, allowed_ips=["203.0.113.0/24"])
    for edge in edges:
        for ln, reason in ((banned, D.DENIAL_REASON_BANNED), (disabled, D.DENIAL_REASON_DISABLED),
                           (expired, D.DENIAL_REASON_EXPIRED), (locked, D.DENIAL_REASON_IP_NOT_ALLOWED)):
            r = channels(edge, s, ln)
            assert not r.authorized and r.denial_reason == reason, D.Name(r.denial_reason)
            assert not r.channels and not r.bouquet_ids
            assert authorize(edge, s, ln, stream=0).denial_reason == reason
        assert channels(edge, s, locked, client_ip="203.0.113.7").authorized
    # Nothing was counted for the right credentials.
    assert p.sql(f"SELECT count(*) FROM frontdesk.playback_failures WHERE tenant_id = {s.tenant}"
                 f" AND key LIKE 'u:{banned.username}|%'") == "0"


def test_channels_failures_counted_with_authorize(p, shop, edges):
    line = new_line(shop)
    bad, elsewhere = ip(), ip()
    for i in range(FAIL_MAX_USER - 1):
        if i % 2:
            r = channels(edges[i % 2], shop, line, password=f"guess-{i}", client_ip=bad)
            assert r.denial_reason == D.DENIAL_REASON_BAD_CREDENTIALS
        else:
            a = authorize(edges[i % 2], shop, line, password=f"guess-{i}", client_ip=bad, stream=0)
            assert a.denial_reason == D.DENIAL_REASON_BAD_CREDENTIALS
    assert channels(edges[0], shop, line, client_ip=bad).authorized      # one below the limit
    channels(edges[1], shop, line, password="guess-last", client_ip=bad)
    for edge in edges:
        r = channels(edge, shop, line, client_ip=bad)
        assert not r.authorized and r.denial_reason == D.DENIAL_REASON_RATE_LIMITED
        assert 0 < r.retry_after_seconds <= 300 and not r.channels
        assert authorize(edge, shop, line, client_ip=bad, stream=0).denial_reason == D.DENIAL_REASON_RATE_LIMITED
        assert channels(edge, shop, line, client_ip=elsewhere).authorized   # a stranger cannot lock it out
    n = p.sql(f"SELECT failures FROM frontdesk.playback_failures WHERE tenant_id = {shop.tenant}"
              f" AND key = 'u:{line.username}|{bad}'")
    assert n == str(FAIL_MAX_USER)


def test_channels_bad_input(p, shop, edges):
    line = new_line(shop)
    good = dict(tenant_id=shop.tenant, username=line.username, password=line.password, client_ip=ip(),
                user_agent=VLC)
    for change in ({"client_ip": ""}, {"client_ip": "1.2.3.4/32"}, {"client_ip": "2001:db8::/64"},
                   {"client_ip": "fe80::1%eth0"}, {"client_ip": "999.1.1.1"}, {"username": ""},
                   {"username": "u" * 65}, {"password": "p" * 65}, {"user_agent": "a\nb"},
                   {"user_agent": "a" * 513}, {"tenant_id": 0}, {"tenant_id": -1}):
        for edge in edges:
            expect("INVALID_ARGUMENT", edge.GetLineChannels, **{**good, **change})
    expect("NOT_FOUND", edges[0].GetLineChannels, **{**good, "tenant_id": 987654321})
    assert p.sql(f"SELECT count(*) FROM frontdesk.playback_failures WHERE key LIKE '%{good['client_ip']}'") == "0"


def test_channels_5000_streams(p, edges):
    """A line of 5,000 channels (the bouquet maximum): all of them, in order,
    answered quickly (the measure is printed: pytest -s)."""
    s = make_shop(p)
    first = int(p.sql(f"SELECT coalesce(max(id), 0) + 1 FROM frontdesk.streams WHERE tenant_id = {s.tenant}"))
    p.sql(f"""INSERT INTO frontdesk.streams (tenant_id, id, name, kind, category, number, logo_url, epg_channel)
              SELECT {s.tenant}, {first} - 1 + g, 'Channel ' || g, 1, 'Category ' || (g % 40), g,
                     'https://logos.example.net/channels/' || g || '.png', 'channel' || g || '.example'
                FROM generate_series(1, 5000) g""")
    ids = list(range(first + 4999, first - 1, -1))      # reversed: bouquet order, not id order
    b = s.t.lines.CreateBouquet(name=uniq("big"), stream_ids=ids, idempotency_key=ikey()).bouquet
    pkg = s.t.lines.CreatePackage(name=uniq("big"), duration_days=30, max_connections=1, bouquet_ids=[b.id],
                                  idempotency_key=ikey()).package
    line = new_line(s, package=pkg)
    r = channels(edges[0], s, line)
    assert [ch.stream_id for ch in r.channels] == ids
    assert len(r.categories) == 40 and r.categories[0].name == "Category 0"   # 5000 % 40 == 0
    times = []
    for i in range(10):
        start = time.perf_counter()
        r = channels(edges[i % 2], s, line)
        times.append(time.perf_counter() - start)
        assert len(r.channels) == 5000
    print(f"\n{[round(x * 1000) for x in times]}\nGetLineChannels, 5,000 channels ({r.ByteSize()} bytes): median {statistics.median(times) * 1000:.1f} ms,"
          f" min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
    assert statistics.median(times) < 1.0, times


# ---------------------------------------------------------------------------
# 2. The catalog version.
# ---------------------------------------------------------------------------

def test_catalog_version_and_event(p, edges):
    s = make_shop(p)
    t = s.t
    line = new_line(s)
    other = make_shop(p)
    other_before = catalog_version(p, other.tenant)
    w = watch(p, 1)
    bq = s.cat.bouquet
    steps = [
        ("CreateStream", lambda: stream(t, uniq("s"))),
        ("CreateStream into a bouquet", lambda: stream(t, uniq("s"), bouquet_ids=[bq])),
        ("UpdateStream", lambda: t.lines.UpdateStream(stream_id=s.cat.streams[0], name=uniq("renamed"))),
        ("CreateBouquet", lambda: t.lines.CreateBouquet(name=uniq("b"), stream_ids=[s.cat.streams[1]],
                                                        idempotency_key=ikey())),
        ("UpdateBouquet name", lambda: t.lines.UpdateBouquet(bouquet_id=bq, name=uniq("bq"))),
        ("UpdateBouquet streams", lambda: t.lines.UpdateBouquet(
            bouquet_id=bq, stream_ids=C.Int64List(values=list(reversed(s.cat.streams))))),
        ("CreatePackage", lambda: t.lines.CreatePackage(name=uniq("p"), duration_days=1, bouquet_ids=[bq],
                                                        max_connections=1, idempotency_key=ikey())),
        ("UpdatePackage", lambda: t.lines.UpdatePackage(package_id=s.cat.package.id,
                                                        credit_cost=C.OptionalInt64(value=5))),
    ]
    v = catalog_version(p, s.tenant)
    for i, (what, change) in enumerate(steps):
        change()
        after = time.monotonic()
        assert catalog_version(p, s.tenant) == v + 1, f"{what}: bumped once"
        v += 1
        e, arrival, _ = w.until(lambda e: e.type == PE.PLAYBACK_EVENT_TYPE_CATALOG_CHANGED
                                and e.tenant_id == s.tenant)
        assert e.catalog_version == v and e.line_id == 0, what
        within(arrival, after, what)
        assert channels(edges[i % 2], s, line).catalog_version == v, what
    # Not the catalog: a line, the lines settings. Nor another tenant's.
    new_line(s)
    t.lines.UpdateLinesSettings(trials_per_day=C.OptionalInt32(value=3))
    w.none_of(lambda e: e.type == PE.PLAYBACK_EVENT_TYPE_CATALOG_CHANGED and e.tenant_id == s.tenant)
    assert catalog_version(p, s.tenant) == v
    assert catalog_version(p, other.tenant) == other_before
    w.cancel()


# ---------------------------------------------------------------------------
# 3. ReportSessions.
# ---------------------------------------------------------------------------

def test_report_keeps_sessions_alive(p, shop, edges):
    line = new_line(shop)
    kept = allowed(edges[0], shop, line)
    dropped = allowed(edges[0], shop, line, stream=shop.cat.streams[1])
    start = time.time()
    i = 0
    while time.time() - start < SESSION_TIMEOUT * 1.8:
        ended, r = report(edges[i % 2], (shop.tenant, kept.session_id))
        assert not ended, f"kept alive by reports alone: {ended}"
        assert r.next_report_seconds == SESSION_TIMEOUT // 3
        i += 1
        time.sleep(1.0)
    # Never a SessionHeartbeat: the reports kept one alive, the other timed out.
    assert session_row(p, kept.session_id) == (False, 0)
    assert session_row(p, dropped.session_id) == (True, E.SESSION_END_REASON_TIMED_OUT)
    seen = float(p.sql(f"SELECT extract(epoch FROM now() - last_seen_at) FROM frontdesk.sessions"
                       f" WHERE id = {kept.session_id}"))
    assert seen < 3.0, f"last_seen_at written by the reports' batches ({seen:.1f} s ago)"
    for edge in edges:
        assert beat(edge, shop, kept.session_id).active
    ended, _ = report(edges[1], (shop.tenant, kept.session_id), (shop.tenant, dropped.session_id))
    assert ended == {(shop.tenant, dropped.session_id): E.SESSION_END_REASON_TIMED_OUT}


def test_report_says_which_ended(p, edges):
    s = make_shop(p, max_connections=10)
    o = make_shop(p)
    line = new_line(s)
    live = allowed(edges[0], s, line)
    kicked = allowed(edges[0], s, line, stream=s.cat.streams[1])
    closed = allowed(edges[1], s, line, stream=s.cat.streams[2])
    foreign = allowed(edges[0], o, new_line(o))
    s.t.lines.KickSession(session_id=kicked.session_id, reason="test")
    edges[1].EndSession(tenant_id=s.tenant, session_id=closed.session_id)
    banned_line, deleted_line, expiring = new_line(s), new_line(s), new_line(s)
    banned = allowed(edges[1], s, banned_line)
    deleted = allowed(edges[0], s, deleted_line)
    s.t.lines.SetLineStatus(line_id=banned_line.id, status=L.LINE_STATUS_BANNED)
    s.t.lines.DeleteLine(line_id=deleted_line.id)
    want = {
        (s.tenant, kicked.session_id): E.SESSION_END_REASON_KICKED,
        (s.tenant, closed.session_id): E.SESSION_END_REASON_CLOSED,
        (s.tenant, 99_999_999): E.SESSION_END_REASON_UNSPECIFIED,
        (s.tenant, foreign.session_id): E.SESSION_END_REASON_UNSPECIFIED,   # another tenant's: unknown here
        (987_654_321, live.session_id): E.SESSION_END_REASON_UNSPECIFIED,
        (s.tenant, banned.session_id): E.SESSION_END_REASON_LINE_REVOKED,
        (s.tenant, deleted.session_id): E.SESSION_END_REASON_LINE_REVOKED,
    }
    asked = [(s.tenant, live.session_id), (s.tenant, kicked.session_id), (s.tenant, closed.session_id),
             (s.tenant, 99_999_999), (s.tenant, foreign.session_id), (987_654_321, live.session_id),
             (s.tenant, banned.session_id), (s.tenant, deleted.session_id), (s.tenant, kicked.session_id)]
    for edge in edges:
        # A replica that cached a session hears of its end through NOTIFY
        # (milliseconds; the LISTEN thread polls every 0.25 s).
        got = {}
        wait_until(lambda edge=edge: got.update(ended=report(edge, *asked)[0]) or got["ended"] == want,
                   PROPAGATION, f"the ended sessions reported ({got})")
        ended, _ = report(edge, *asked)
        assert ended == want, ended
    assert session_row(p, foreign.session_id) == (False, 0), "another tenant's session is not touched"
    assert beat(edges[1], o, foreign.session_id).active
    # A line that expired (written behind linesd's back, so no replica was
    # told): the replica that never cached the session finds out from the
    # database and ends it; the other follows (the sweep's announcement).
    x = allowed(edges[0], s, expiring)
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() WHERE id = {expiring.id}")
    ended, _ = report(edges[1], (s.tenant, x.session_id))
    assert ended == {(s.tenant, x.session_id): E.SESSION_END_REASON_LINE_EXPIRED}
    assert session_row(p, x.session_id) == (True, E.SESSION_END_REASON_LINE_EXPIRED)
    wait_until(lambda: report(edges[0], (s.tenant, x.session_id))[0] ==
               {(s.tenant, x.session_id): E.SESSION_END_REASON_LINE_EXPIRED}, 2.0, "the other replica knows")


def test_report_suspended_reseller(p, edges):
    s = make_shop(p)
    mine, sibling = new_line(s, owner=s.r2), new_line(s, owner=s.r3)
    a = allowed(edges[0], s, mine)
    b = allowed(edges[1], s, sibling)
    s.t.auth.UpdateReseller(reseller_id=s.r.id, status=A.RESELLER_STATUS_SUSPENDED)
    want = {(s.tenant, a.session_id): E.SESSION_END_REASON_LINE_REVOKED}
    for edge in edges:
        wait_until(lambda edge=edge: report(edge, (s.tenant, a.session_id), (s.tenant, b.session_id))[0] == want,
                   2.0, "the suspended reseller's session reported ended")
    assert session_row(p, a.session_id) == (True, E.SESSION_END_REASON_LINE_REVOKED)
    assert session_row(p, b.session_id) == (False, 0)


def test_report_bad_input(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    for edge in edges:
        for bad in ([(shop.tenant, 0)], [(0, a.session_id)], [(-1, a.session_id)], [(shop.tenant, -5)],
                    [(shop.tenant, a.session_id)] * 10_001):
            details = expect("INVALID_ARGUMENT", edge.ReportSessions,
                             sessions=[L.SessionReport(tenant_id=t, session_id=x) for t, x in bad])
            assert "sessions" in details, details
    # Nothing was ended by a refused report; an empty one is fine.
    assert session_row(p, a.session_id) == (False, 0)
    assert report(edges[0])[0] == {}
    # 10,000 at once: the limit itself; unknown ones all reported, the live one not.
    many = [(shop.tenant, a.session_id)] + [(shop.tenant, 50_000_000 + i) for i in range(9_999)]
    start = time.perf_counter()
    ended, _ = report(edges[1], *many)
    took = time.perf_counter() - start
    assert len(ended) == 9_999 and (shop.tenant, a.session_id) not in ended
    assert set(ended.values()) == {E.SESSION_END_REASON_UNSPECIFIED}
    print(f"\nReportSessions of 10,000 sessions (9,999 unknown): {took * 1000:.0f} ms")


# ---------------------------------------------------------------------------
# 4. WatchPlaybackEvents.
# ---------------------------------------------------------------------------

def test_watch_ready_then_kick_across_replicas(p, shop, edges):
    w0, w1 = watch(p, 0), watch(p, 1)
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    b = allowed(edges[1], shop, line, stream=shop.cat.streams[1])
    shop.t.at(0).KickSession(session_id=a.session_id, reason="kicked for the test")
    after = time.monotonic()
    for w in (w0, w1):
        e, arrival, _ = w.until(is_ended(shop.tenant, a.session_id))
        assert e.end_reason == E.SESSION_END_REASON_KICKED and e.line_id == line.id
        within(arrival, after, "a kick at replica 0")
    shop.t.at(1).KickSession(session_id=b.session_id)
    after = time.monotonic()
    for w in (w0, w1):
        e, arrival, _ = w.until(is_ended(shop.tenant, b.session_id, E.SESSION_END_REASON_KICKED))
        within(arrival, after, "a kick at replica 1")
    # A player stopping, a session replaced (the same client zapping on a full line).
    c = allowed(edges[0], shop, line)
    edges[1].EndSession(tenant_id=shop.tenant, session_id=c.session_id)
    w0.until(is_ended(shop.tenant, c.session_id, E.SESSION_END_REASON_CLOSED), WITHIN + 0.5)
    addr = ip()
    x = allowed(edges[0], shop, line, client_ip=addr)
    allowed(edges[1], shop, line, client_ip=ip(), stream=shop.cat.streams[2])
    y = allowed(edges[0], shop, line, client_ip=addr, stream=shop.cat.streams[1])
    assert y.replaced_session_id == x.session_id
    w1.until(is_ended(shop.tenant, x.session_id, E.SESSION_END_REASON_REPLACED), WITHIN + 0.5)
    w0.cancel()
    w1.cancel()


def test_watch_revocations(p, edges):
    s = make_shop(p)
    w = watch(p, 1)
    cases = [
        ("ban", lambda ln: s.t.at(0).SetLineStatus(line_id=ln.id, status=L.LINE_STATUS_BANNED),
         L.LINE_STATUS_BANNED),
        ("disable", lambda ln: s.r.at(0).SetLineStatus(line_id=ln.id, status=L.LINE_STATUS_DISABLED),
         L.LINE_STATUS_DISABLED),
        ("password", lambda ln: s.r.at(0).UpdateLine(line_id=ln.id, new_password=uniq("newpw")),
         L.LINE_STATUS_ACTIVE),
        ("generated password", lambda ln: s.t.at(0).UpdateLine(line_id=ln.id, generate_password=True),
         L.LINE_STATUS_ACTIVE),
        ("delete", lambda ln: s.t.at(0).DeleteLine(line_id=ln.id), L.LINE_STATUS_UNSPECIFIED),
    ]
    for what, change, status in cases:
        line = new_line(s)
        a = allowed(edges[0], s, line)
        change(line)
        after = time.monotonic()
        e, arrival, _ = w.until(is_revoked(s.tenant, line.id))
        assert e.line_status == status, (what, L.LineStatus.Name(e.line_status))
        within(arrival, after, what)
        e, arrival, _ = w.until(is_ended(s.tenant, a.session_id, E.SESSION_END_REASON_LINE_REVOKED))
        within(arrival, after, what + ": its session")
        assert session_row(p, a.session_id) == (True, E.SESSION_END_REASON_LINE_REVOKED), what
        if what != "delete":
            assert not authorize(edges[1], s, line).allowed, what
    # Not revocations: enabling, notes, connections, an extension.
    line = new_line(s)
    a = allowed(edges[0], s, line)
    s.t.lines.SetLineStatus(line_id=line.id, status=L.LINE_STATUS_DISABLED)
    w.until(is_revoked(s.tenant, line.id))
    s.t.lines.SetLineStatus(line_id=line.id, status=L.LINE_STATUS_ACTIVE)
    s.t.lines.UpdateLine(line_id=line.id, notes=C.OptionalString(value="a note"),
                         max_connections=C.OptionalInt32(value=1))
    s.r.lines.ExtendLine(line_id=line.id, idempotency_key=ikey())
    w.none_of(is_revoked(s.tenant, line.id))
    b = allowed(edges[1], s, line)
    w.none_of(is_ended(s.tenant, b.session_id))
    w.cancel()


def test_watch_expiry(p, edges):
    s = make_shop(p)
    w = watch(p, 0)
    line = new_line(s)
    at = int(p.sql(f"WITH u AS (UPDATE frontdesk.lines SET expires_at = date_trunc('second', now())"
                   f" + interval '2 seconds' WHERE id = {line.id} RETURNING expires_at)"
                   f" SELECT extract(epoch FROM expires_at)::bigint FROM u"))
    a = allowed(edges[1], s, line)
    assert a.line.expires_at == at
    # The expiry is announced by the sweep (every 0.5 s here).
    e, arrival, _ = w.until(is_revoked(s.tenant, line.id), WAIT)
    arrived = time.time() - (time.monotonic() - arrival)
    assert e.line_status == L.LINE_STATUS_EXPIRED
    assert at <= arrived <= at + WITHIN + SWEEP_MS / 1000, f"{arrived - at:.2f} s after the expiry"
    e, _, _ = w.until(is_ended(s.tenant, a.session_id, E.SESSION_END_REASON_LINE_EXPIRED))
    w.cancel()


def test_watch_tenant_suspension(p, edges):
    s = make_shop(p)
    line = new_line(s)
    a = allowed(edges[0], s, line)
    w = watch(p, 1)
    p.pa.auth.SuspendTenant(tenant_id=s.tenant, reason="unpaid")
    after = time.monotonic()
    e, arrival, _ = w.until(is_revoked(s.tenant, 0))
    within(arrival, after, "a tenant's suspension")
    # Told before it answers: the next authorization here is decided afresh.
    assert authorize(edges[1], s, line, stream=0).denial_reason == D.DENIAL_REASON_TENANT_SUSPENDED
    assert channels(edges[1], s, line).denial_reason == D.DENIAL_REASON_TENANT_SUSPENDED
    e, arrival, _ = w.until(is_ended(s.tenant, a.session_id, E.SESSION_END_REASON_LINE_REVOKED))
    within(arrival, after, "a suspended tenant's session")
    assert session_row(p, a.session_id) == (True, E.SESSION_END_REASON_LINE_REVOKED)
    p.pa.auth.SuspendTenant(tenant_id=s.tenant, reactivate=True)
    w.none_of(lambda e: e.tenant_id == s.tenant and e.type == PE.PLAYBACK_EVENT_TYPE_LINE_REVOKED, 0.5)
    wait_until(lambda: authorize(edges[0], s, line).allowed, 5.0, "reactivation seen")
    w.cancel()


def test_watch_reseller_suspension(p, edges):
    s = make_shop(p)
    mine, subs, sibling, off = new_line(s), new_line(s, owner=s.r2), new_line(s, owner=s.r3), new_line(s)
    s.t.lines.SetLineStatus(line_id=off.id, status=L.LINE_STATUS_DISABLED)
    a = allowed(edges[0], s, mine)
    b = allowed(edges[1], s, subs)
    c = allowed(edges[0], s, sibling)
    w0, w1 = watch(p, 0), watch(p, 1)
    s.t.auth.UpdateReseller(reseller_id=s.r.id, status=A.RESELLER_STATUS_SUSPENDED)
    after = time.monotonic()
    for w in (w0, w1):
        for ln in (mine, subs):
            e, arrival, _ = w.until(is_revoked(s.tenant, ln.id))
            assert e.line_status == L.LINE_STATUS_ACTIVE
            within(arrival, after, "a reseller's suspension")
        for x in (a, b):
            e, arrival, _ = w.until(is_ended(s.tenant, x.session_id, E.SESSION_END_REASON_LINE_REVOKED))
            within(arrival, after, "a suspended reseller's session")
    assert authorize(edges[1], s, mine, stream=0).denial_reason == D.DENIAL_REASON_RESELLER_SUSPENDED
    assert channels(edges[0], s, subs).denial_reason == D.DENIAL_REASON_RESELLER_SUSPENDED
    for w in (w0, w1):
        w.none_of(lambda e: e.tenant_id == s.tenant and e.line_id in (sibling.id, off.id)
                  and e.type == PE.PLAYBACK_EVENT_TYPE_LINE_REVOKED, 0.5)
    assert session_row(p, c.session_id) == (False, 0)
    assert authorize(edges[0], s, sibling, stream=0).allowed
    s.t.auth.UpdateReseller(reseller_id=s.r.id, status=A.RESELLER_STATUS_ACTIVE)
    w0.cancel()
    w1.cancel()


def test_watch_every_tenant_on_one_stream(p, edges):
    w = watch(p, 0)
    shops = [make_shop(p), make_shop(p)]
    for s in shops:
        line = new_line(s)
        a = allowed(edges[1], s, line)
        s.t.lines.KickSession(session_id=a.session_id)
        w.until(is_ended(s.tenant, a.session_id, E.SESSION_END_REASON_KICKED))
    w.cancel()


def test_watch_listen_lost_ends_streams(p, edges):
    w0, w1 = watch(p, 0), watch(p, 1)
    killed = p.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                   " WHERE application_name = 'linesd-listen' AND datname = current_database()")
    assert killed == "2", killed
    for w in (w0, w1):
        code, details = w.ended()
        assert code == "UNAVAILABLE", details
    wait_until(lambda: p.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'linesd-listen'"
                             " AND datname = current_database() AND state = 'idle'") == "2", WAIT, "LISTEN again")
    # A watch opened while a replica does not listen is refused (UNAVAILABLE)
    # rather than left deaf; once it listens again, it works.
    w = None
    for _ in range(50):
        w = PlaybackWatch(p.lch[1], p.service_token("edged", "linesd"))
        item = w.q.get(timeout=WAIT)
        if item[0] == "msg" and item[1].ready:
            break
        assert item[0] == "end" and item[1] == "UNAVAILABLE", item
        time.sleep(0.1)
    s = make_shop(p)
    line = new_line(s)
    a = allowed(edges[0], s, line)
    s.t.lines.KickSession(session_id=a.session_id)
    w.until(is_ended(s.tenant, a.session_id))
    w.cancel()


def test_watch_cancel_and_replica_stop(p, edges):
    many = [watch(p, i % 2) for i in range(10)]
    for m in many:
        m.cancel()
    extra = p.add_linesd()
    i = len(p.lch) - 1
    w = watch(p, i)
    started = time.time()
    assert extra.stop() == 0
    assert time.time() - started < 4, "a stream held up the stop"
    code, _ = w.ended()
    assert code in ("UNAVAILABLE", "CANCELLED"), code
    assert watch(p, 0)   # the others keep serving


# ---------------------------------------------------------------------------
# 5. Scopes: the edge's service token only.
# ---------------------------------------------------------------------------

def test_scopes(p, shop, edges):
    line = new_line(shop)
    a = allowed(edges[0], shop, line)
    # An API key that somehow holds the edge's scopes (written behind authd's back).
    key = shop.t.auth.CreateApiKey(name=uniq("key"), idempotency_key=ikey()).secret
    key_id = key.split("_")[2]
    p.sql(f"UPDATE frontdesk.api_keys SET scopes = scopes || '{{line_channels_read,sessions_report,"
          f"playback_events,playback_authorize}}'::text[] WHERE tenant_id = {shop.tenant} AND id = {key_id}")
    time.sleep(fdstack.CACHE_MS / 1000 + 0.2)
    callers = {
        "tenant admin": shop.t.token, "reseller": shop.r.token, "platform admin": p.pa.token,
        "linesd's service token": p.service_token("linesd", "linesd"), "an API key with the scopes": key,
    }
    req = dict(tenant_id=shop.tenant, username=line.username, password=line.password, client_ip=ip(),
               user_agent=VLC)
    for who, token in callers.items():
        for i in (0, 1):
            cl = Lines(p.lch[i], token)
            assert code_of(cl.GetLineChannels, **req) == "PERMISSION_DENIED", who
            assert code_of(cl.ReportSessions, sessions=[L.SessionReport(tenant_id=shop.tenant,
                                                                        session_id=a.session_id)]) \
                == "PERMISSION_DENIED", who
            code, _ = PlaybackWatch(p.lch[i], token).ended()
            assert code == "PERMISSION_DENIED", who
    anon = Lines(p.lch[0])
    assert code_of(anon.GetLineChannels, **req) == "UNAUTHENTICATED"
    assert code_of(anon.ReportSessions) == "UNAUTHENTICATED"
    assert PlaybackWatch(p.lch[1], None).ended()[0] == "UNAUTHENTICATED"
    assert PlaybackWatch(p.lch[1], "not-a-token").ended()[0] == "UNAUTHENTICATED"
    # Nothing of the line was counted or touched; the edge itself is served.
    assert p.sql(f"SELECT count(*) FROM frontdesk.playback_failures WHERE key LIKE '%{req['client_ip']}'") == "0"
    assert channels(edges[1], shop, line).authorized
    assert report(edges[1], (shop.tenant, a.session_id))[0] == {}


# ---------------------------------------------------------------------------
# 6. The failure limits' keys: an IPv6 client is its /64.
# ---------------------------------------------------------------------------

def failures(p, s, key):
    v = p.sql(f"SELECT failures FROM frontdesk.playback_failures WHERE tenant_id = {s.tenant} AND key = '{key}'")
    return int(v) if v else 0


def test_rate_limit_ipv6_per_64(p, shop, edges):
    line = new_line(shop)
    net, other = net64(), net64()
    # Wrong passwords from ever new addresses of one /64, through both methods.
    for i in range(FAIL_MAX_USER):
        addr = f"{net}{i + 1:x}:{i * 7 + 3:x}:{i:x}:1"
        if i % 2:
            assert channels(edges[i % 2], shop, line, password=f"g{i}", client_ip=addr).denial_reason == \
                D.DENIAL_REASON_BAD_CREDENTIALS
        else:
            assert authorize(edges[i % 2], shop, line, password=f"g{i}", client_ip=addr).denial_reason == \
                D.DENIAL_REASON_BAD_CREDENTIALS
    src = f"{net}:/64"
    assert failures(p, shop, f"u:{line.username}|{src}") == FAIL_MAX_USER
    assert failures(p, shop, f"a:{src}") == FAIL_MAX_USER
    # The whole /64 is limited together, even an address it never used.
    for edge in edges:
        d = authorize(edge, shop, line, client_ip=f"{net}ffff:ffff:ffff:fffe")
        assert d.denial_reason == D.DENIAL_REASON_RATE_LIMITED and d.retry_after_seconds > 0
        assert channels(edge, shop, line, client_ip=f"{net}1234::5").denial_reason == D.DENIAL_REASON_RATE_LIMITED
        # Another /64 is not.
        assert authorize(edge, shop, line, client_ip=f"{other}:1", stream=0).allowed
        assert channels(edge, shop, line, client_ip=f"{other}:2").authorized


def test_rate_limit_ipv6_per_source(p, shop, edges):
    line = new_line(shop)
    net = net64()
    for i in range(FAIL_MAX_IP):
        edge = edges[i % 2]
        addr = f"{net}{i:x}:{i:x}:{i:x}:{i + 1:x}"
        fn = channels if i % 2 else authorize
        r = fn(edge, shop, line, username=uniq(f"spray{i}"), client_ip=addr)
        assert r.denial_reason == D.DENIAL_REASON_BAD_CREDENTIALS, i
    assert failures(p, shop, f"a:{net}:/64") == FAIL_MAX_IP
    for edge in edges:
        assert authorize(edge, shop, line, client_ip=f"{net}abcd::1").denial_reason == D.DENIAL_REASON_RATE_LIMITED
        assert channels(edge, shop, line, client_ip=f"{net}9::9").denial_reason == D.DENIAL_REASON_RATE_LIMITED
        assert authorize(edge, shop, line, client_ip=f"{net64()}:1", stream=0).allowed


def test_rate_limit_ipv4_unchanged(p, shop, edges):
    line = new_line(shop)
    addr, neighbour = ip(), ip()
    assert not authorize(edges[0], shop, line, password="nope", client_ip=addr).allowed
    assert not channels(edges[1], shop, line, password="nope", client_ip=addr).authorized
    assert failures(p, shop, f"u:{line.username}|{addr}") == 2
    assert failures(p, shop, f"a:{addr}") == 2
    assert failures(p, shop, f"a:{neighbour}") == 0
    # Written IPv4-mapped, an IPv4 address counts as itself (not as one /64 of every IPv4 client).
    mapped = ip()
    assert not channels(edges[0], shop, line, password="nope", client_ip=f"::ffff:{mapped}").authorized
    assert failures(p, shop, f"u:{line.username}|{mapped}") == 1
    for i in range(FAIL_MAX_USER - 3):
        authorize(edges[i % 2], shop, line, password=f"x{i}", client_ip=addr)
    assert channels(edges[0], shop, line, client_ip=addr).authorized        # one below
    authorize(edges[1], shop, line, password="last", client_ip=addr)
    assert channels(edges[0], shop, line, client_ip=addr).denial_reason == D.DENIAL_REASON_RATE_LIMITED
    assert channels(edges[1], shop, line, client_ip=neighbour).authorized    # the next address is another source
    # Bad addresses stay INVALID_ARGUMENT for both methods, and count nothing.
    for bad in ("", "10.1.2", "10.0.0.1/32", "2001:db8::/64", "2001:db8::1%eth0", "::ffff:999.1.1.1"):
        for edge in edges:
            expect("INVALID_ARGUMENT", edge.AuthorizePlayback, tenant_id=shop.tenant, username=line.username,
                   password="x", stream_id=0, client_ip=bad, user_agent=VLC)
            expect("INVALID_ARGUMENT", edge.GetLineChannels, tenant_id=shop.tenant, username=line.username,
                   password="x", client_ip=bad, user_agent=VLC)
