"""linesd's catalog end to end: packages, bouquets, streams and the lines
settings through the real binaries (authd, billingd, linesd) on one migrated
database, with the rows checked in SQL as postgres.

What must hold (api/frontdesk/v1/lines.proto, common.proto; DESIGN.md):
- creates answer the stored row; with an idempotency key the same request
  again answers the first row and stores nothing more (also from 8 clients at
  once), another request under the key is FAILED_PRECONDITION;
- stream ids are 1, 2, 3... in each tenant, independently;
- a bouquet keeps its streams in the order given; ListStreams by bouquet (or
  by line: its bouquets' streams in order, each once) pages in that order;
- updates change what is set and nothing else; unknown ids are NOT_FOUND;
- tenant admins and platform admins (naming the tenant) write; resellers read
  only; another tenant's ids are NOT_FOUND in every method that takes one;
- bad input is INVALID_ARGUMENT naming the field and stores nothing;
- lines settings: defaults without a row, an update upserts."""
import threading

import pytest

import fdapi
from fdapi import expect, outcome
from fdstack import Stack, ikey, uniq

L = fdapi.lines_pb2
C = fdapi.common_pb2

LIVE, MOVIE, SERIES = L.STREAM_KIND_LIVE, L.STREAM_KIND_MOVIE, L.STREAM_KIND_SERIES
TS, M3U8, RTMP = C.OUTPUT_FORMAT_TS, C.OUTPUT_FORMAT_M3U8, C.OUTPUT_FORMAT_RTMP
REFUSE_NEW = L.CONNECTION_LIMIT_POLICY_REFUSE_NEW
END_OLDEST = L.CONNECTION_LIMIT_POLICY_END_OLDEST

TABLES = ("streams", "bouquets", "packages", "idempotency", "lines_settings")


@pytest.fixture(scope="module")
def p():
    s = Stack()
    yield s
    codes = s.close()
    assert all(c == 0 for c in codes.values()), f"a service did not stop cleanly: {codes}"


def counts(p, tenant):
    """Rows per catalog table of the tenant."""
    # idempotency: linesd's keys (tenants/fd/idem.h; every service keeps its own there)
    only = {"idempotency": " AND service = 'linesd'"}
    return {t: int(p.sql(f"SELECT count(*) FROM frontdesk.{t} WHERE tenant_id = {tenant}{only.get(t, '')}"))
            for t in TABLES}


def stream(who, **kw):
    kw.setdefault("name", uniq("ch"))
    kw.setdefault("kind", LIVE)
    return who.lines.CreateStream(**kw).stream


def bouquet(who, stream_ids=(), **kw):
    kw.setdefault("name", uniq("bq"))
    return who.lines.CreateBouquet(stream_ids=list(stream_ids), **kw).bouquet


def package(who, **kw):
    kw.setdefault("name", uniq("pkg"))
    kw.setdefault("duration_days", 30)
    kw.setdefault("max_connections", 1)
    return who.lines.CreatePackage(**kw).package


def all_pages(fn, page_size, **kw):
    """Every item of a List* call, page by page; returns (items, pages)."""
    items, token, pages = [], "", 0
    while True:
        r = fn(page_size=page_size, page_token=token, **kw)
        pages += 1
        field = [f for f in ("packages", "bouquets", "streams") if f in type(r).DESCRIPTOR.fields_by_name][0]
        got = list(getattr(r, field))
        assert len(got) <= page_size
        items += got
        token = r.next_page_token
        if not token:
            return items, pages
        assert got, "a page with a next token must not be empty"
        assert pages < 1000


def line_of(p, t, reseller_id, bouquet_ids, state="active"):
    """A line inserted as postgres (lines.c makes them through the API; this
    file needs only its owner and bouquets). Returns its id."""
    path = p.sql(f"SELECT path FROM frontdesk.accounts WHERE tenant_id = {t.tenant} AND id = {reseller_id}")
    assert path
    arr = "{" + ",".join(str(b) for b in bouquet_ids) + "}"
    return int(p.sql(f"""
        WITH i AS (
          INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash,
                                       password_box, package_id, state, expires_at, max_connections, bouquet_ids)
          VALUES ({t.tenant}, {reseller_id}, '{path}', '{uniq("u")}', '\\x00', '\\x00', 0, '{state}',
                  now() + interval '1 day', 1, '{arr}')
          RETURNING id)
        SELECT id FROM i"""))


# ---------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------

def test_stream_ids_are_numbered_per_tenant(p):
    a, b = p.tenant(), p.tenant()
    ids_a, ids_b = [], []
    for _ in range(3):
        ids_a.append(stream(a).id)
        ids_b.append(stream(b).id)
    assert ids_a == [1, 2, 3]
    assert ids_b == [1, 2, 3]
    assert p.sql(f"SELECT string_agg(id::text, ',' ORDER BY id) FROM frontdesk.streams WHERE tenant_id = {a.tenant}") \
        == "1,2,3"


def test_concurrent_stream_creates_number_without_gaps(p):
    t = p.tenant()
    ids, errors = [], []

    def make():
        for _ in range(5):
            got, what = outcome(t.lines.CreateStream, name=uniq("ch"), kind=LIVE)
            (ids.append(what.stream.id) if got == "OK" else errors.append(what))

    threads = [threading.Thread(target=make) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(ids) == list(range(1, 31))


def test_create_stream_returns_what_was_stored_and_appends_to_bouquets(p):
    t = p.tenant()
    s1, s2 = stream(t), stream(t)
    b1, b2, b3 = bouquet(t, [s2.id, s1.id]), bouquet(t, [s1.id]), bouquet(t)
    s = t.lines.CreateStream(name="BBC One HD", kind=MOVIE, category="UK", number=101,
                             logo_url="https://img.example/bbc1.png", epg_channel="bbc1.uk",
                             bouquet_ids=[b3.id, b1.id]).stream
    assert (s.id, s.tenant_id, s.name, s.kind, s.category, s.number, s.logo_url, s.epg_channel, s.disabled) == \
        (3, t.tenant, "BBC One HD", MOVIE, "UK", 101, "https://img.example/bbc1.png", "bbc1.uk", False)
    assert s.created_at > 1_700_000_000 and s.updated_at >= s.created_at
    row = p.rows(f"SELECT name, kind, category, number, logo_url, epg_channel, disabled FROM frontdesk.streams"
                  f" WHERE tenant_id = {t.tenant} AND id = 3")
    assert row == [["BBC One HD", "2", "UK", "101", "https://img.example/bbc1.png", "bbc1.uk", "f"]]
    got = {b.id: list(b.stream_ids) for b in t.lines.ListBouquets().bouquets}
    assert got == {b1.id: [s2.id, s1.id, 3], b2.id: [s1.id], b3.id: [3]}


def test_update_stream_changes_only_what_is_set(p):
    t = p.tenant()
    s = t.lines.CreateStream(name="one", kind=LIVE, category="News", number=5, logo_url="http://l/1.png",
                             epg_channel="one.uk").stream
    u = t.lines.UpdateStream(stream_id=s.id, number=C.OptionalInt32(value=0)).stream
    assert (u.name, u.kind, u.category, u.number, u.logo_url, u.epg_channel, u.disabled) == \
        ("one", LIVE, "News", 0, "http://l/1.png", "one.uk", False)
    u = t.lines.UpdateStream(stream_id=s.id, name="two", kind=SERIES, category=C.OptionalString(value=""),
                             logo_url=C.OptionalString(value=""), epg_channel=C.OptionalString(value="two.uk"),
                             disabled=C.OptionalBool(value=True)).stream
    assert (u.id, u.name, u.kind, u.category, u.number, u.logo_url, u.epg_channel, u.disabled) == \
        (s.id, "two", SERIES, "", 0, "", "two.uk", True)
    assert u.created_at == s.created_at and u.updated_at >= s.updated_at
    assert p.rows(f"SELECT name, kind, category, number, logo_url, epg_channel, disabled FROM frontdesk.streams"
                  f" WHERE tenant_id = {t.tenant} AND id = {s.id}") == [["two", "3", "", "0", "", "two.uk", "t"]]
    # nothing set: nothing changes but updated_at
    same = t.lines.UpdateStream(stream_id=s.id).stream
    assert (same.name, same.kind, same.disabled) == ("two", SERIES, True)
    assert "not found" in expect("NOT_FOUND", t.lines.UpdateStream, stream_id=99, name="x")
    expect("INVALID_ARGUMENT", t.lines.UpdateStream, stream_id=0, name="x")


# ---------------------------------------------------------------------------
# Idempotency
# ---------------------------------------------------------------------------

CREATES = {
    "CreateStream": (lambda t, ctx: dict(name=uniq("ch"), kind=LIVE, category="News"),
                     lambda r: r.stream, "streams"),
    "CreateBouquet": (lambda t, ctx: dict(name=uniq("bq"), stream_ids=ctx["streams"]),
                      lambda r: r.bouquet, "bouquets"),
    "CreatePackage": (lambda t, ctx: dict(name=uniq("pkg"), duration_days=30, credit_cost=10, max_connections=2,
                                          bouquet_ids=[ctx["bouquet"]]),
                      lambda r: r.package, "packages"),
}


@pytest.mark.parametrize("method", sorted(CREATES))
def test_idempotent_create_replays_and_refuses_another_request(p, method):
    t = p.tenant()
    cat = p.catalog(t)
    ctx = {"streams": cat.streams, "bouquet": cat.bouquet}
    fields, pick, table = CREATES[method]
    call = getattr(t.lines, method)
    req = fields(t, ctx)
    key = ikey()
    before = counts(p, t.tenant)
    first = pick(call(idempotency_key=key, **req))
    again = pick(call(idempotency_key=key, **req))
    assert again.id == first.id and again.name == first.name and again.created_at == first.created_at
    after = counts(p, t.tenant)
    assert after[table] == before[table] + 1
    assert after["idempotency"] == before["idempotency"] + 1
    # the same key with another request
    other = dict(req, name=uniq("other"))
    msg = expect("FAILED_PRECONDITION", call, idempotency_key=key, **other)
    assert "idempotency_key" in msg
    assert counts(p, t.tenant) == after
    # no key: no de-duplication
    a, b = pick(call(**req)), pick(call(**req))
    assert a.id != b.id and a.id != first.id
    assert counts(p, t.tenant)[table] == after[table] + 2
    # keys are the caller's: the platform admin's same key makes its own row
    pa = pick(getattr(p.pa.lines, method)(idempotency_key=key, tenant_id=t.tenant, **req))
    assert pa.id not in (first.id, a.id, b.id)
    # bad keys
    expect("INVALID_ARGUMENT", call, idempotency_key="has space", **req)
    expect("INVALID_ARGUMENT", call, idempotency_key="k" * 129, **req)


@pytest.mark.parametrize("method", sorted(CREATES))
def test_one_key_from_8_clients_at_once_creates_once(p, method):
    t = p.tenant()
    cat = p.catalog(t)
    fields, pick, table = CREATES[method]
    req = fields(t, {"streams": cat.streams, "bouquet": cat.bouquet})
    key = ikey()
    before = counts(p, t.tenant)
    results = [None] * 8
    gate = threading.Barrier(8)

    def go(i):
        gate.wait()
        results[i] = outcome(getattr(t.lines, method), idempotency_key=key, **req)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(code == "OK" for code, _ in results), results
    assert len({pick(r).id for _, r in results}) == 1
    assert counts(p, t.tenant)[table] == before[table] + 1


# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

def test_package_create_list_and_update(p):
    t = p.tenant()
    cat = p.catalog(t)
    b2 = bouquet(t, cat.streams[:1])
    pk = t.lines.CreatePackage(name="Gold Monthly", duration_days=30, duration_hours=12, credit_cost=25,
                               max_connections=3, bouquet_ids=[b2.id, cat.bouquet],
                               allowed_output_formats=[M3U8, TS], bandwidth_cap_kbps=8000).package
    assert (pk.tenant_id, pk.name, pk.duration_days, pk.duration_hours, pk.credit_cost, pk.max_connections,
            list(pk.bouquet_ids), pk.trial, list(pk.allowed_output_formats), pk.bandwidth_cap_kbps, pk.disabled) == \
        (t.tenant, "Gold Monthly", 30, 12, 25, 3, [b2.id, cat.bouquet], False, [M3U8, TS], 8000, False)
    assert p.rows(f"SELECT duration_days, duration_hours, credit_cost, max_connections, bouquet_ids, output_formats,"
                  f" bandwidth_cap_kbps FROM frontdesk.packages WHERE tenant_id = {t.tenant} AND id = {pk.id}") == \
        [["30", "12", "25", "3", f"{{{b2.id},{cat.bouquet}}}", "{2,1}", "8000"]]
    trial = package(t, name="Free trial", duration_days=0, duration_hours=6, trial=True)
    assert trial.trial and trial.duration_hours == 6 and trial.credit_cost == 0

    # unset wrappers keep the stored values
    u = t.lines.UpdatePackage(package_id=pk.id, credit_cost=C.OptionalInt64(value=0)).package
    assert (u.name, u.duration_days, u.duration_hours, u.credit_cost, u.max_connections, list(u.bouquet_ids),
            list(u.allowed_output_formats), u.bandwidth_cap_kbps) == \
        ("Gold Monthly", 30, 12, 0, 3, [b2.id, cat.bouquet], [M3U8, TS], 8000)
    u = t.lines.UpdatePackage(package_id=pk.id, name="Gold", duration_days=C.OptionalInt32(value=0),
                              max_connections=C.OptionalInt32(value=1),
                              bouquet_ids=C.Int64List(values=[cat.bouquet]),
                              allowed_output_formats=C.OutputFormatList(values=[]),
                              bandwidth_cap_kbps=C.OptionalInt64(value=0)).package
    assert (u.name, u.duration_days, u.duration_hours, u.max_connections, list(u.bouquet_ids),
            list(u.allowed_output_formats), u.bandwidth_cap_kbps) == ("Gold", 0, 12, 1, [cat.bouquet], [], 0)
    assert u.created_at == pk.created_at and u.updated_at >= pk.updated_at
    # the total duration must stay above 0, with the stored half counted
    expect("INVALID_ARGUMENT", t.lines.UpdatePackage, package_id=pk.id, duration_hours=C.OptionalInt32(value=0))
    u = t.lines.UpdatePackage(package_id=pk.id, duration_days=C.OptionalInt32(value=7),
                              duration_hours=C.OptionalInt32(value=0)).package
    assert (u.duration_days, u.duration_hours) == (7, 0)
    assert "not found" in expect("NOT_FOUND", t.lines.UpdatePackage, package_id=pk.id + 1000, name="x")
    msg = expect("NOT_FOUND", t.lines.UpdatePackage, package_id=pk.id, bouquet_ids=C.Int64List(values=[10**12]))
    assert str(10**12) in msg and "bouquet" in msg
    assert t.lines.UpdatePackage(package_id=pk.id).package.bouquet_ids == [cat.bouquet]

    # lists: disabled hidden unless asked, trial filter, name query
    t.lines.UpdatePackage(package_id=pk.id, disabled=C.OptionalBool(value=True))
    assert [x.id for x in t.lines.ListPackages().packages] == [cat.package.id, trial.id]
    assert [x.id for x in t.lines.ListPackages(include_disabled=True).packages] == [cat.package.id, pk.id, trial.id]
    assert [x.id for x in t.lines.ListPackages(trial_only=True).packages] == [trial.id]
    assert [x.id for x in t.lines.ListPackages(query="TRIAL").packages] == [trial.id]
    assert [x.id for x in t.lines.ListPackages(query="gol", include_disabled=True).packages] == [pk.id]
    assert [x.id for x in t.lines.ListPackages(query="%").packages] == []
    assert [x.id for x in t.lines.ListPackages(query="_").packages] == []
    t.lines.UpdatePackage(package_id=pk.id, disabled=C.OptionalBool(value=False))
    assert pk.id in [x.id for x in t.lines.ListPackages().packages]


def test_list_packages_pages_by_id(p):
    t = p.tenant()
    made = [package(t).id for _ in range(7)]
    got, pages = all_pages(t.lines.ListPackages, 3)
    assert [x.id for x in got] == made and pages == 3
    got, pages = all_pages(t.lines.ListPackages, 7)
    assert [x.id for x in got] == made and pages == 1
    expect("INVALID_ARGUMENT", t.lines.ListPackages, page_token="bogus")
    expect("INVALID_ARGUMENT", t.lines.ListPackages, page_size=-1)


# ---------------------------------------------------------------------------
# Bouquets
# ---------------------------------------------------------------------------

def test_bouquet_keeps_order_and_update_replaces_it(p):
    t = p.tenant()
    ids = [stream(t).id for _ in range(5)]
    order = [ids[3], ids[0], ids[4], ids[1]]
    b = t.lines.CreateBouquet(name="Sports", stream_ids=order).bouquet
    assert (b.tenant_id, b.name, list(b.stream_ids)) == (t.tenant, "Sports", order)
    assert p.sql(f"SELECT stream_ids FROM frontdesk.bouquets WHERE tenant_id = {t.tenant} AND id = {b.id}") == \
        "{" + ",".join(map(str, order)) + "}"
    u = t.lines.UpdateBouquet(bouquet_id=b.id, name="Sports+").bouquet
    assert (u.name, list(u.stream_ids)) == ("Sports+", order)
    new = [ids[2], ids[4], ids[0]]
    u = t.lines.UpdateBouquet(bouquet_id=b.id, stream_ids=C.Int64List(values=new)).bouquet
    assert (u.name, list(u.stream_ids), u.created_at) == ("Sports+", new, b.created_at)
    assert u.updated_at >= b.updated_at
    msg = expect("NOT_FOUND", t.lines.UpdateBouquet, bouquet_id=b.id, stream_ids=C.Int64List(values=[ids[0], 77]))
    assert "77" in msg
    assert list(t.lines.ListBouquets().bouquets[0].stream_ids) == new
    u = t.lines.UpdateBouquet(bouquet_id=b.id, stream_ids=C.Int64List(values=[])).bouquet
    assert list(u.stream_ids) == []
    expect("NOT_FOUND", t.lines.UpdateBouquet, bouquet_id=b.id + 1000, name="x")
    expect("NOT_FOUND", t.lines.UpdateBouquet, bouquet_id=b.id + 1000, stream_ids=C.Int64List(values=[ids[0]]))
    expect("INVALID_ARGUMENT", t.lines.UpdateBouquet, bouquet_id=0, name="x")


def test_list_bouquets_query_and_pages(p):
    t = p.tenant()
    made = [bouquet(t, name=f"Bq {i} {'Kids' if i % 2 else 'Adults'}").id for i in range(5)]
    got, pages = all_pages(t.lines.ListBouquets, 2)
    assert [x.id for x in got] == made and pages == 3
    assert [x.id for x in t.lines.ListBouquets(query="kids").bouquets] == [made[1], made[3]]
    got, _ = all_pages(t.lines.ListBouquets, 1, query="ADULT")
    assert [x.id for x in got] == [made[0], made[2], made[4]]


# ---------------------------------------------------------------------------
# ListStreams
# ---------------------------------------------------------------------------

def test_list_streams_filters_and_pages(p):
    t = p.tenant()
    s = [stream(t, name="CNN", kind=LIVE, category="News").id,
         stream(t, name="Matrix", kind=MOVIE, category="Films").id,
         stream(t, name="BBC News", kind=LIVE, category="News").id,
         stream(t, name="Lost", kind=SERIES, category="Shows").id,
         stream(t, name="news at ten", kind=LIVE, category="news").id]
    t.lines.UpdateStream(stream_id=s[2], disabled=C.OptionalBool(value=True))
    ids = lambda **kw: [x.id for x in t.lines.ListStreams(**kw).streams]  # noqa: E731
    assert ids() == [s[0], s[1], s[3], s[4]]
    assert ids(include_disabled=True) == s
    assert ids(kind=LIVE, include_disabled=True) == [s[0], s[2], s[4]]
    assert ids(category="News", include_disabled=True) == [s[0], s[2]]
    assert ids(query="NEWS", include_disabled=True) == [s[2], s[4]]
    assert ids(query="news", kind=LIVE, category="news") == [s[4]]
    got, pages = all_pages(t.lines.ListStreams, 2, include_disabled=True)
    assert [x.id for x in got] == s and pages == 3
    expect("INVALID_ARGUMENT", t.lines.ListStreams, kind=9)
    expect("INVALID_ARGUMENT", t.lines.ListStreams, bouquet_id=-1)
    expect("INVALID_ARGUMENT", t.lines.ListStreams, bouquet_id=1, line_id=1)


def test_list_streams_by_bouquet_in_its_order_and_paged(p):
    t = p.tenant()
    ids = [stream(t, kind=MOVIE if i % 3 == 0 else LIVE).id for i in range(9)]
    order = [ids[i] for i in (7, 2, 8, 0, 5, 1, 6, 3)]
    b = bouquet(t, order)
    other = bouquet(t, [ids[4], ids[7]])
    got, pages = all_pages(t.lines.ListStreams, 3, bouquet_id=b.id)
    assert [x.id for x in got] == order and pages == 3
    assert [x.tenant_id for x in got] == [t.tenant] * 8
    got, pages = all_pages(t.lines.ListStreams, 1, bouquet_id=b.id)
    assert [x.id for x in got] == order and pages == 8
    movies = [i for i in order if (i - 1) % 3 == 0]
    assert [x.id for x in t.lines.ListStreams(bouquet_id=b.id, kind=MOVIE).streams] == movies
    t.lines.UpdateStream(stream_id=order[1], disabled=C.OptionalBool(value=True))
    assert [x.id for x in t.lines.ListStreams(bouquet_id=b.id).streams] == order[:1] + order[2:]
    assert [x.id for x in t.lines.ListStreams(bouquet_id=b.id, include_disabled=True).streams] == order
    assert [x.id for x in t.lines.ListStreams(bouquet_id=other.id).streams] == [ids[4], ids[7]]
    assert list(t.lines.ListStreams(bouquet_id=bouquet(t).id).streams) == []
    assert "not found" in expect("NOT_FOUND", t.lines.ListStreams, bouquet_id=b.id + 1000)


def test_list_streams_by_line_follows_its_bouquets(p):
    t = p.tenant()
    r1, r2 = p.reseller(t), p.reseller(t)
    sub = p.reseller(t, creator=r1)
    ids = [stream(t).id for _ in range(6)]
    b1 = bouquet(t, [ids[4], ids[1], ids[2]])
    b2 = bouquet(t, [ids[2], ids[5], ids[0]])
    line = line_of(p, t, sub.id, [b2.id, b1.id])
    want = [ids[2], ids[5], ids[0], ids[4], ids[1]]   # b2's, then b1's not seen yet
    for who in (t, r1, sub):
        got, pages = all_pages(who.lines.ListStreams, 2, line_id=line)
        assert [x.id for x in got] == want and pages == 3
    # outside the caller's subtree, pending, or unknown: NOT_FOUND
    expect("NOT_FOUND", r2.lines.ListStreams, line_id=line)
    expect("NOT_FOUND", t.lines.ListStreams, line_id=line_of(p, t, sub.id, [b1.id], state="pending"))
    expect("NOT_FOUND", t.lines.ListStreams, line_id=line + 100000)
    assert [x.id for x in t.lines.ListStreams(line_id=line_of(p, t, r2.id, [])).streams] == []


# ---------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------

def test_reseller_reads_but_does_not_write(p):
    t = p.tenant()
    cat = p.catalog(t)
    r = p.reseller(t)
    assert [x.id for x in r.lines.ListPackages().packages] == [cat.package.id]
    assert [x.id for x in r.lines.ListBouquets().bouquets] == [cat.bouquet]
    assert [x.id for x in r.lines.ListStreams(bouquet_id=cat.bouquet).streams] == cat.streams
    assert r.lines.GetLinesSettings().settings.trials_per_day == 10
    before = counts(p, t.tenant)
    writes = [
        (r.lines.CreateStream, dict(name="x", kind=LIVE, idempotency_key=ikey())),
        (r.lines.CreateBouquet, dict(name="x", stream_ids=cat.streams)),
        (r.lines.CreatePackage, dict(name="x", duration_days=1, max_connections=1)),
        (r.lines.UpdateStream, dict(stream_id=cat.streams[0], name="x")),
        (r.lines.UpdateBouquet, dict(bouquet_id=cat.bouquet, name="x")),
        (r.lines.UpdatePackage, dict(package_id=cat.package.id, name="x")),
        (r.lines.UpdateLinesSettings, dict(connection_limit_policy=END_OLDEST)),
    ]
    for fn, kw in writes:
        expect("PERMISSION_DENIED", fn, **kw)
    assert counts(p, t.tenant) == before
    assert p.sql(f"SELECT count(*) FROM frontdesk.streams WHERE tenant_id = {t.tenant} AND name = 'x'") == "0"


def test_another_tenants_ids_are_not_found(p):
    a, b = p.tenant(), p.tenant()
    mine = p.catalog(a, streams=2)
    theirs = p.catalog(b, streams=4)          # stream ids 3 and 4 exist in b only
    their_stream = theirs.streams[-1]
    assert their_stream not in mine.streams
    their_line = line_of(p, b, b.id, [theirs.bouquet])
    before_a, before_b = counts(p, a.tenant), counts(p, b.tenant)
    calls = [
        (a.lines.UpdateStream, dict(stream_id=their_stream, name="x")),
        (a.lines.UpdateBouquet, dict(bouquet_id=theirs.bouquet, name="x")),
        (a.lines.UpdateBouquet, dict(bouquet_id=mine.bouquet, stream_ids=C.Int64List(values=[their_stream]))),
        (a.lines.UpdatePackage, dict(package_id=theirs.package.id, name="x")),
        (a.lines.UpdatePackage, dict(package_id=mine.package.id, bouquet_ids=C.Int64List(values=[theirs.bouquet]))),
        (a.lines.CreateBouquet, dict(name="x", stream_ids=[their_stream])),
        (a.lines.CreatePackage, dict(name="x", duration_days=1, max_connections=1, bouquet_ids=[theirs.bouquet])),
        (a.lines.CreateStream, dict(name="x", kind=LIVE, bouquet_ids=[theirs.bouquet])),
        (a.lines.ListStreams, dict(bouquet_id=theirs.bouquet)),
        (a.lines.ListStreams, dict(line_id=their_line)),
        # naming the other tenant outright
        (a.lines.ListStreams, dict(tenant_id=b.tenant)),
        (a.lines.ListPackages, dict(tenant_id=b.tenant)),
        (a.lines.GetLinesSettings, dict(tenant_id=b.tenant)),
        (a.lines.UpdateStream, dict(tenant_id=b.tenant, stream_id=their_stream, name="x")),
        (a.lines.UpdateLinesSettings, dict(tenant_id=b.tenant, connection_limit_policy=END_OLDEST)),
    ]
    for fn, kw in calls:
        expect("NOT_FOUND", fn, **kw)
    # a reseller of b cannot see a's catalog either
    rb = p.reseller(b)
    expect("NOT_FOUND", rb.lines.ListStreams, bouquet_id=mine.bouquet)
    assert counts(p, a.tenant) == before_a and counts(p, b.tenant) == before_b
    assert p.sql("SELECT count(*) FROM frontdesk.streams WHERE name = 'x'") == "0"
    assert [x.id for x in b.lines.ListStreams(bouquet_id=theirs.bouquet).streams] == theirs.streams


def test_platform_admin_writes_a_named_tenant(p):
    t = p.tenant()
    s = p.pa.lines.CreateStream(tenant_id=t.tenant, name="pa stream", kind=LIVE).stream
    assert (s.id, s.tenant_id) == (1, t.tenant)
    b = p.pa.lines.CreateBouquet(tenant_id=t.tenant, name="pa bq", stream_ids=[s.id]).bouquet
    pk = p.pa.lines.CreatePackage(tenant_id=t.tenant, name="pa pkg", duration_days=1, max_connections=1,
                                  bouquet_ids=[b.id]).package
    assert p.pa.lines.UpdatePackage(tenant_id=t.tenant, package_id=pk.id, name="renamed").package.name == "renamed"
    assert p.pa.lines.UpdateLinesSettings(tenant_id=t.tenant, trials_per_day=C.OptionalInt32(value=3)) \
        .settings.trials_per_day == 3
    assert [x.id for x in t.lines.ListPackages().packages] == [pk.id]
    assert [x.id for x in p.pa.lines.ListStreams(tenant_id=t.tenant, bouquet_id=b.id).streams] == [s.id]
    for fn, kw in [(p.pa.lines.CreateStream, dict(name="x", kind=LIVE)),
                   (p.pa.lines.CreateBouquet, dict(name="x")),
                   (p.pa.lines.CreatePackage, dict(name="x", duration_days=1, max_connections=1)),
                   (p.pa.lines.UpdateStream, dict(stream_id=s.id, name="x")),
                   (p.pa.lines.ListStreams, dict()),
                   (p.pa.lines.ListPackages, dict()),
                   (p.pa.lines.GetLinesSettings, dict()),
                   (p.pa.lines.UpdateLinesSettings, dict(connection_limit_policy=END_OLDEST))]:
        assert "tenant_id" in expect("INVALID_ARGUMENT", fn, tenant_id=0, **kw)
    assert p.sql("SELECT count(*) FROM frontdesk.streams WHERE tenant_id = 0") == "0"
    assert p.sql("SELECT count(*) FROM frontdesk.lines_settings WHERE tenant_id = 0") == "0"


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

BIG = "x" * 1_000_000
CONTROL = ["a\x01b", "a\nb", "a\x7fb", "a\x1b[31mred"]
MANY = list(range(1, 10_001))
TEXT_CLASSES = [" ", " \u3000\u200b ", "bank\u202egpj.exe", "a\u2066b", "a\u0085b", "a\u009bb"]
NAME_CLASSES = [" leading", "trailing ", "trailing\u00a0"]


def bad_cases(cat):
    s, bq, pk = cat.streams, cat.bouquet, cat.package.id
    ok_pkg = dict(name="p", duration_days=1, max_connections=1)
    cases = [
        ("CreatePackage", "duration_days", dict(ok_pkg, duration_days=-1)),
        ("CreatePackage", "duration_hours", dict(ok_pkg, duration_hours=-1)),
        ("CreatePackage", "duration_days", dict(ok_pkg, duration_days=3661)),
        ("CreatePackage", "duration_hours", dict(ok_pkg, duration_hours=24)),
        ("CreatePackage", "duration", dict(ok_pkg, duration_days=0, duration_hours=0)),
        ("CreatePackage", "credit_cost", dict(ok_pkg, credit_cost=-1)),
        ("CreatePackage", "credit_cost", dict(ok_pkg, credit_cost=1_000_000_001)),
        ("CreatePackage", "max_connections", dict(ok_pkg, max_connections=0)),
        ("CreatePackage", "max_connections", dict(ok_pkg, max_connections=1001)),
        ("CreatePackage", "bandwidth_cap_kbps", dict(ok_pkg, bandwidth_cap_kbps=-5)),
        ("CreatePackage", "bouquet_ids", dict(ok_pkg, bouquet_ids=MANY)),
        ("CreatePackage", "bouquet_ids", dict(ok_pkg, bouquet_ids=[bq, bq])),
        ("CreatePackage", "bouquet_ids", dict(ok_pkg, bouquet_ids=[-3])),
        ("CreatePackage", "allowed_output_formats", dict(ok_pkg, allowed_output_formats=[7])),
        ("CreatePackage", "allowed_output_formats", dict(ok_pkg, allowed_output_formats=[0])),
        ("CreatePackage", "allowed_output_formats", dict(ok_pkg, allowed_output_formats=[TS, TS])),
        ("CreatePackage", "allowed_output_formats", dict(ok_pkg, allowed_output_formats=[TS, M3U8, RTMP, 4])),
        ("CreatePackage", "name", dict(ok_pkg, name="")),
        ("CreatePackage", "name", dict(ok_pkg, name=BIG)),
        ("CreatePackage", "name", dict(ok_pkg, name="y" * 201)),
        ("CreateBouquet", "stream_ids", dict(name="b", stream_ids=MANY)),
        ("CreateBouquet", "stream_ids", dict(name="b", stream_ids=[0])),
        ("CreateBouquet", "name", dict(name=BIG)),
        ("CreateBouquet", "name", dict(name="")),
        ("CreateStream", "kind", dict(name="s")),
        ("CreateStream", "kind", dict(name="s", kind=4)),
        ("CreateStream", "name", dict(name=BIG, kind=LIVE)),
        ("CreateStream", "category", dict(name="s", kind=LIVE, category="c" * 101)),
        ("CreateStream", "number", dict(name="s", kind=LIVE, number=-1)),
        ("CreateStream", "logo_url", dict(name="s", kind=LIVE, logo_url="h" * 1001)),
        ("CreateStream", "epg_channel", dict(name="s", kind=LIVE, epg_channel="e" * 201)),
        ("CreateStream", "bouquet_ids", dict(name="s", kind=LIVE, bouquet_ids=MANY)),
        ("UpdatePackage", "duration_days", dict(package_id=pk, duration_days=C.OptionalInt32(value=-1))),
        ("UpdatePackage", "duration_hours", dict(package_id=pk, duration_hours=C.OptionalInt32(value=-2))),
        ("UpdatePackage", "duration", dict(package_id=pk, duration_days=C.OptionalInt32(value=0),
                                           duration_hours=C.OptionalInt32(value=0))),
        ("UpdatePackage", "max_connections", dict(package_id=pk, max_connections=C.OptionalInt32(value=0))),
        ("UpdatePackage", "credit_cost", dict(package_id=pk, credit_cost=C.OptionalInt64(value=-1))),
        ("UpdatePackage", "bouquet_ids", dict(package_id=pk, bouquet_ids=C.Int64List(values=MANY))),
        ("UpdatePackage", "allowed_output_formats",
         dict(package_id=pk, allowed_output_formats=C.OutputFormatList(values=[9]))),
        ("UpdatePackage", "bandwidth_cap_kbps", dict(package_id=pk, bandwidth_cap_kbps=C.OptionalInt64(value=-1))),
        ("UpdatePackage", "name", dict(package_id=pk, name=BIG)),
        ("UpdateBouquet", "stream_ids", dict(bouquet_id=bq, stream_ids=C.Int64List(values=MANY))),
        ("UpdateBouquet", "stream_ids", dict(bouquet_id=bq, stream_ids=C.Int64List(values=[s[0], s[0]]))),
        ("UpdateBouquet", "name", dict(bouquet_id=bq, name=BIG)),
        ("UpdateStream", "kind", dict(stream_id=s[0], kind=5)),
        ("UpdateStream", "number", dict(stream_id=s[0], number=C.OptionalInt32(value=-1))),
        ("UpdateStream", "category", dict(stream_id=s[0], category=C.OptionalString(value="c" * 101))),
        ("UpdateStream", "logo_url", dict(stream_id=s[0], logo_url=C.OptionalString(value="h" * 1001))),
        ("UpdateStream", "name", dict(stream_id=s[0], name=BIG)),
        ("UpdateLinesSettings", "connection_limit_policy", dict(connection_limit_policy=3)),
        ("UpdateLinesSettings", "trials_per_day", dict(trials_per_day=C.OptionalInt32(value=-1))),
        ("UpdateLinesSettings", "trials_per_day", dict(trials_per_day=C.OptionalInt32(value=100_001))),
        ("ListPackages", "query", dict(query=BIG)),
        ("ListStreams", "category", dict(category="c" * 101)),
    ]
    for ctl in CONTROL:
        cases += [
            ("CreatePackage", "name", dict(ok_pkg, name=ctl)),
            ("CreateBouquet", "name", dict(name=ctl)),
            ("CreateStream", "name", dict(name=ctl, kind=LIVE)),
            ("CreateStream", "category", dict(name="s", kind=LIVE, category=ctl)),
            ("CreateStream", "logo_url", dict(name="s", kind=LIVE, logo_url=ctl)),
            ("CreateStream", "epg_channel", dict(name="s", kind=LIVE, epg_channel=ctl)),
            ("UpdatePackage", "name", dict(package_id=pk, name=ctl)),
            ("UpdateBouquet", "name", dict(bouquet_id=bq, name=ctl)),
            ("UpdateStream", "name", dict(stream_id=s[0], name=ctl)),
            ("UpdateStream", "epg_channel", dict(stream_id=s[0], epg_channel=C.OptionalString(value=ctl))),
        ]
    # Issue 12's classes: whitespace only, bidirectional overrides, C1
    # controls in every text field; leading or trailing blanks in names.
    for bad in TEXT_CLASSES:
        cases += [
            ("CreatePackage", "name", dict(ok_pkg, name=bad)),
            ("CreateBouquet", "name", dict(name=bad)),
            ("CreateStream", "name", dict(name=bad, kind=LIVE)),
            ("CreateStream", "category", dict(name="s", kind=LIVE, category=bad)),
            ("CreateStream", "logo_url", dict(name="s", kind=LIVE, logo_url=bad)),
            ("CreateStream", "epg_channel", dict(name="s", kind=LIVE, epg_channel=bad)),
            ("UpdatePackage", "name", dict(package_id=pk, name=bad)),
            ("UpdateBouquet", "name", dict(bouquet_id=bq, name=bad)),
            ("UpdateStream", "name", dict(stream_id=s[0], name=bad)),
            ("UpdateStream", "category", dict(stream_id=s[0], category=C.OptionalString(value=bad))),
            ("UpdateStream", "logo_url", dict(stream_id=s[0], logo_url=C.OptionalString(value=bad))),
            ("UpdateStream", "epg_channel", dict(stream_id=s[0], epg_channel=C.OptionalString(value=bad))),
        ]
    for bad in NAME_CLASSES:
        cases += [
            ("CreatePackage", "name", dict(ok_pkg, name=bad)),
            ("CreateBouquet", "name", dict(name=bad)),
            ("CreateStream", "name", dict(name=bad, kind=LIVE)),
            ("CreateStream", "category", dict(name="s", kind=LIVE, category=bad)),
            ("CreateStream", "epg_channel", dict(name="s", kind=LIVE, epg_channel=bad)),
            ("UpdatePackage", "name", dict(package_id=pk, name=bad)),
            ("UpdateBouquet", "name", dict(bouquet_id=bq, name=bad)),
            ("UpdateStream", "name", dict(stream_id=s[0], name=bad)),
            ("UpdateStream", "category", dict(stream_id=s[0], category=C.OptionalString(value=bad))),
            ("UpdateStream", "epg_channel", dict(stream_id=s[0], epg_channel=C.OptionalString(value=bad))),
        ]
    return cases


def test_names_and_text_that_must_still_pass(p):
    t = p.tenant()
    name = "Sport 1 – Türkiye 東京"
    st = stream(t, name=name, category="Sport & News", epg_channel="sport1.tr", logo_url="https://x/logo a.png")
    assert (st.name, st.category, st.epg_channel) == (name, "Sport & News", "sport1.tr")
    assert bouquet(t, name=name).name == name
    assert package(t, name=name).name == name


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(p):
    t = p.tenant()
    cat = p.catalog(t)
    before = counts(p, t.tenant)
    snapshot = p.sql(f"""SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
        SELECT s::text AS x FROM frontdesk.streams s WHERE tenant_id = {t.tenant}
        UNION ALL SELECT b::text FROM frontdesk.bouquets b WHERE tenant_id = {t.tenant}
        UNION ALL SELECT k::text FROM frontdesk.packages k WHERE tenant_id = {t.tenant}) q""")
    failures = []
    for method, field, kw in bad_cases(cat):
        code, what = outcome(getattr(t.lines, method), idempotency_key=ikey(), **kw) \
            if method.startswith("Create") else outcome(getattr(t.lines, method), **kw)
        if code != "INVALID_ARGUMENT" or field not in what:
            failures.append((method, field, {k: (v if len(str(v)) < 60 else "...") for k, v in kw.items()},
                             code, what if isinstance(what, str) else "OK"))
    assert failures == []
    assert counts(p, t.tenant) == before
    assert p.sql(f"""SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
        SELECT s::text AS x FROM frontdesk.streams s WHERE tenant_id = {t.tenant}
        UNION ALL SELECT b::text FROM frontdesk.bouquets b WHERE tenant_id = {t.tenant}
        UNION ALL SELECT k::text FROM frontdesk.packages k WHERE tenant_id = {t.tenant}) q""") == snapshot


def test_unknown_ids_in_lists_are_not_found_and_change_nothing(p):
    t = p.tenant()
    cat = p.catalog(t)
    before = counts(p, t.tenant)
    missing_bq = cat.bouquet + 10**9
    for fn, kw, named in [
            (t.lines.CreatePackage, dict(name="p", duration_days=1, max_connections=1,
                                         bouquet_ids=[cat.bouquet, missing_bq]), missing_bq),
            (t.lines.CreateStream, dict(name="s", kind=LIVE, bouquet_ids=[missing_bq, cat.bouquet]), missing_bq),
            (t.lines.CreateBouquet, dict(name="b", stream_ids=[cat.streams[0], 99]), 99)]:
        msg = expect("NOT_FOUND", fn, idempotency_key=ikey(), **kw)
        assert str(named) in msg
    assert counts(p, t.tenant) == before
    # the refused CreateStream did not take a stream id
    assert stream(t).id == len(cat.streams) + 1


def test_embedded_nul_is_refused(p):
    t = p.tenant()
    before = counts(p, t.tenant)
    payload = fdapi.replace_bytes(L.CreateStreamRequest(name="alicePevil", kind=LIVE), "alicePevil", b"alice\x00evil")
    got, what = outcome(t.lines.raw, "CreateStream", payload)
    assert got == "INVALID_ARGUMENT" and "name" in what
    assert counts(p, t.tenant) == before


# ---------------------------------------------------------------------------
# Lines settings
# ---------------------------------------------------------------------------

def test_lines_settings_defaults_and_updates(p):
    t = p.tenant()
    s = t.lines.GetLinesSettings().settings
    assert (s.tenant_id, s.connection_limit_policy, s.trials_per_day) == (t.tenant, REFUSE_NEW, 10)
    assert counts(p, t.tenant)["lines_settings"] == 0
    # nothing set: the defaults, nothing stored
    s = t.lines.UpdateLinesSettings().settings
    assert (s.connection_limit_policy, s.trials_per_day) == (REFUSE_NEW, 10)
    assert counts(p, t.tenant)["lines_settings"] == 0

    s = t.lines.UpdateLinesSettings(connection_limit_policy=END_OLDEST).settings
    assert (s.tenant_id, s.connection_limit_policy, s.trials_per_day) == (t.tenant, END_OLDEST, 10)
    assert s.updated_at > 1_700_000_000
    assert p.rows(f"SELECT connection_limit_policy, trials_per_day FROM frontdesk.lines_settings"
                  f" WHERE tenant_id = {t.tenant}") == [["end_oldest", "10"]]
    s = t.lines.UpdateLinesSettings(trials_per_day=C.OptionalInt32(value=0)).settings
    assert (s.connection_limit_policy, s.trials_per_day) == (END_OLDEST, 0)
    s = t.lines.GetLinesSettings().settings
    assert (s.connection_limit_policy, s.trials_per_day) == (END_OLDEST, 0)
    s = t.lines.UpdateLinesSettings(connection_limit_policy=REFUSE_NEW).settings
    assert (s.connection_limit_policy, s.trials_per_day) == (REFUSE_NEW, 0)
    s = t.lines.UpdateLinesSettings(connection_limit_policy=END_OLDEST).settings
    assert (s.connection_limit_policy, s.trials_per_day) == (END_OLDEST, 0)
    s = t.lines.UpdateLinesSettings(connection_limit_policy=REFUSE_NEW,
                                    trials_per_day=C.OptionalInt32(value=100_000)).settings
    assert (s.connection_limit_policy, s.trials_per_day) == (REFUSE_NEW, 100_000)
    assert p.rows(f"SELECT connection_limit_policy, trials_per_day FROM frontdesk.lines_settings"
                  f" WHERE tenant_id = {t.tenant}") == [["refuse_new", "100000"]]
    # another tenant still has the defaults
    o = p.tenant()
    s = o.lines.GetLinesSettings().settings
    assert (s.tenant_id, s.connection_limit_policy, s.trials_per_day, s.updated_at) == (o.tenant, REFUSE_NEW, 10, 0)
    # trials only, on a tenant without a row: the default policy is stored with it
    s = o.lines.UpdateLinesSettings(trials_per_day=C.OptionalInt32(value=2)).settings
    assert (s.connection_limit_policy, s.trials_per_day) == (REFUSE_NEW, 2)
    assert p.rows(f"SELECT connection_limit_policy, trials_per_day FROM frontdesk.lines_settings"
                  f" WHERE tenant_id = {o.tenant}") == [["refuse_new", "2"]]


# ---------------------------------------------------------------------------
# fdstack's ready catalog (other test files rely on it)
# ---------------------------------------------------------------------------

def test_fdstack_catalog_builds_a_sellable_package(p):
    t = p.tenant()
    cat = p.catalog(t, cost=7, max_connections=3, days=0, hours=5, trial=True)
    assert cat.streams == [1, 2, 3]
    pk = cat.package
    assert (pk.credit_cost, pk.max_connections, pk.duration_days, pk.duration_hours, pk.trial,
            list(pk.bouquet_ids)) == (7, 3, 0, 5, True, [cat.bouquet])
    assert [x.id for x in t.lines.ListStreams(bouquet_id=cat.bouquet).streams] == cat.streams
