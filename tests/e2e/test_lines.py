"""linesd end to end: lines (CreateLine, GetLine, ListLines, UpdateLine,
ExtendLine, SetLineStatus, DeleteLine, CreateTrialLine) through the real
binaries (authd, billingd, linesd) over loopback on one migrated database,
with the books checked in SQL as postgres.

What must hold (DESIGN.md, Tenancy and Security rules; api/frontdesk/v1/lines.proto,
billing.proto; the charge outbox described at the top of services/linesd/lines.c):
- money and lines stay together: a line is created or extended only when its
  charge is made, and charged once, whatever the concurrency, replays or a
  linesd killed between billingd's Charge and its own commit (the retry of the
  same request, or the reconciliation pass, completes it); not enough credits is
  FAILED_PRECONDITION and leaves no line and no pending charge behind;
- idempotency: the same key and request returns the first result (also from 8
  clients at once); another request under the key is FAILED_PRECONDITION;
- status is computed at read time (EXPIRED the second expires_at passes);
- trials: CREATE_TRIALS only, at most the tenant's trials_per_day per reseller
  per rolling 24 hours, exactly, also under concurrency;
- a reseller sees and acts on its subtree only, a tenant admin on the whole
  tenant; another tenant's ids, or ids outside the subtree, answer NOT_FOUND;
- bad input answers INVALID_ARGUMENT naming the field and writes nothing.

Processes: one Stack (database, authd, billingd, one linesd) for the whole
file; the crash tests restart linesd replica 0 on its port and leave it as
they found it."""
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdapi  # noqa: E402
import fdstack  # noqa: E402
from fdapi import expect, outcome  # noqa: E402
from fdstack import SUB, ikey, ns, uniq  # noqa: E402

L = fdapi.lines_pb2
C = fdapi.common_pb2

ACTIVE = L.LINE_STATUS_ACTIVE
DISABLED = L.LINE_STATUS_DISABLED
BANNED = L.LINE_STATUS_BANNED
EXPIRED = L.LINE_STATUS_EXPIRED

COST = 10                       # the shop's package: 10 credits for 30 days
DAYS = 30
DAY = 86400
FAULT = {"FRONTDESK_LINESD_FAULT": "kill_after_charge"}
RECONCILE = {"FRONTDESK_LINESD_RECONCILE_AFTER": "1", "FRONTDESK_LINESD_SWEEP_MS": "200"}


# ---------------------------------------------------------------------------
# The stack and a shop
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack()
    yield s
    s.close()


@pytest.fixture(scope="module")
def shop(p):
    """Tenant t with a paid package (COST credits, DAYS days, 2 connections)
    and a trial package (free, 1 day)."""
    t = p.tenant()
    paid = p.catalog(t, cost=COST, max_connections=2, days=DAYS)
    trial = p.catalog(t, cost=0, max_connections=1, days=1, trial=True)
    other = p.catalog(t, cost=5, max_connections=4, days=10)
    return ns(t=t, tenant=t.tenant, cat=paid, pkg=paid.package, trial=trial.package, other=other)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def count(p, q):
    return int(p.sql(q))


def create(who, pkg, **kw):
    kw.setdefault("idempotency_key", ikey())
    return who.lines.CreateLine(package_id=pkg.id, **kw)


def get(who, line_id=0, username=""):
    return who.lines.GetLine(line_id=line_id, username=username).line


def pending(p, tenant):
    return count(p, f"SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = {tenant} AND state = 'pending'")


def line_rows(p, tenant, reseller):
    """Rows of frontdesk.lines of a reseller, pending ones included."""
    return count(p, f"SELECT count(*) FROM frontdesk.lines WHERE tenant_id = {tenant} AND reseller_id = {reseller}")


def charges_of_line(p, tenant, line_id, reason=None):
    w = f" AND charge_reason = '{reason}'" if reason else ""
    return [int(x[0]) for x in p.rows(
        f"SELECT id FROM frontdesk.ledger_entries WHERE tenant_id = {tenant} AND kind = 'charge'"
        f" AND line_id = {line_id}{w} ORDER BY id")]


def charges_of_reseller(p, tenant, reseller):
    return [int(x[0]) for x in p.rows(
        f"SELECT id FROM frontdesk.ledger_entries WHERE tenant_id = {tenant} AND kind = 'charge'"
        f" AND from_account = {reseller} ORDER BY id")]


def state(p, tenant):
    """Everything a refused call must leave alone: the tenant's lines (their
    content), charges, ledger entries and idempotency records."""
    return {
        # Every column but expiry_announced, which the expiry sweep sets on
        # its own when a line of the tenant expires meanwhile.
        "lines": p.sql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(row(l.id, l.reseller_id, l.username,"
                       f" l.password_hash, l.password_box, l.package_id, l.state, l.expires_at, l.max_connections,"
                       f" l.bouquet_ids, l.allowed_ips, l.allowed_user_agents, l.output_formats,"
                       f" l.bandwidth_cap_kbps, l.trial, l.notes, l.updated_at)::text, ','"
                       f" ORDER BY id)), '') FROM frontdesk.lines l WHERE tenant_id = {tenant}"),
        "status_history": p.sql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(h::text, ',' ORDER BY id)), '')"
                                f" FROM frontdesk.line_status_history h WHERE tenant_id = {tenant}"),
        "audit": count(p, f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tenant}"),
        "charges": p.sql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(c::text, ',' ORDER BY id)), '')"
                         f" FROM frontdesk.line_charges c WHERE tenant_id = {tenant}"),
        "ledger": count(p, f"SELECT count(*) FROM frontdesk.ledger_entries WHERE tenant_id = {tenant}"),
        "idem": count(p, f"SELECT count(*) FROM frontdesk.idempotency WHERE tenant_id = {tenant} AND service = 'linesd'"),
    }


def ready(client, method, request, timeout=20):
    """A call that waits for the channel to (re)connect first: linesd was just
    restarted on the same port and the channel may still be backing off."""
    _, _, stub = client.stub(method)
    return stub(request, timeout=timeout, metadata=client.metadata(), wait_for_ready=True)


def wait_for(what, timeout, interval=0.1):
    deadline = time.time() + timeout
    while True:
        v = what()
        if v:
            return v
        if time.time() > deadline:
            return v
        time.sleep(interval)


def restore_linesd(p):
    """Replica 0 back to the default configuration (no fault, default sweep)."""
    s = p.linesd[0]
    if s.proc.poll() is not None or any(k in s.env for k in (*FAULT, *RECONCILE)):
        p.replace_linesd(0)


def ids(resp):
    return [x.id for x in resp.lines]


def all_lines(who, **kw):
    out, token = [], ""
    for _ in range(1000):
        r = who.lines.ListLines(page_token=token, **kw)
        out += list(r.lines)
        if not r.next_page_token:
            return out
        token = r.next_page_token
    raise AssertionError("paging does not end")


def says_credits(msg):
    m = msg.lower()
    return "balance" in m or "credit" in m


# ---------------------------------------------------------------------------
# 1. Credits run out
# ---------------------------------------------------------------------------

def test_create_until_credits_run_out(p, shop):
    B = 95
    r = p.reseller(shop.t, credits=B)
    made = []
    for i in range(B // COST):
        resp = create(r, shop.pkg)
        assert resp.credits_charged == COST and resp.charge_entry_id > 0
        assert resp.balance_after == B - COST * (i + 1)
        assert resp.line.reseller_id == r.id and resp.line.status == ACTIVE
        made.append(resp.line.id)
    refused_name = uniq("refused")
    msg = expect("FAILED_PRECONDITION", create, r, shop.pkg, username=refused_name)
    assert says_credits(msg), msg
    assert p.balance(r) == B % COST
    assert p.books_balance(shop.tenant)
    assert pending(p, shop.tenant) == 0
    assert line_rows(p, shop.tenant, r.id) == B // COST
    assert count(p, f"SELECT count(*) FROM frontdesk.lines WHERE tenant_id = {shop.tenant}"
                    f" AND username = '{refused_name}'") == 0
    assert len(charges_of_reseller(p, shop.tenant, r.id)) == B // COST
    assert sorted(ids(r.lines.ListLines(page_size=100))) == sorted(made)
    # The refused line left nothing behind: its username is free again.
    p.mint(shop.t, r.id, COST)
    assert create(r, shop.pkg, username=refused_name).line.username == refused_name


def test_create_concurrently_until_credits_run_out(p, shop):
    B, THREADS, EACH = 205, 16, 2
    r = p.reseller(shop.t, credits=B)
    barrier = threading.Barrier(THREADS)

    def worker(_):
        barrier.wait()
        return [outcome(create, r, shop.pkg) for _ in range(EACH)]

    with ThreadPoolExecutor(THREADS) as ex:
        results = [x for batch in ex.map(worker, range(THREADS)) for x in batch]
    codes = [c for c, _ in results]
    assert codes.count("OK") == B // COST, codes
    assert codes.count("FAILED_PRECONDITION") == THREADS * EACH - B // COST, codes
    assert all(says_credits(w) for c, w in results if c != "OK")
    lines = {w.line.id for c, w in results if c == "OK"}
    assert len(lines) == B // COST
    assert len({w.charge_entry_id for c, w in results if c == "OK"}) == B // COST
    assert p.balance(r) == B % COST
    assert p.books_balance(shop.tenant)
    assert pending(p, shop.tenant) == 0
    assert line_rows(p, shop.tenant, r.id) == B // COST
    assert len(charges_of_reseller(p, shop.tenant, r.id)) == B // COST


def test_admin_creates_a_line_for_a_reseller_who_pays(p, shop):
    r = p.reseller(shop.t, credits=50)
    resp = create(shop.t, shop.pkg, reseller_id=r.id)
    assert resp.line.reseller_id == r.id and resp.credits_charged == COST
    assert p.balance(r) == 50 - COST
    assert get(r, resp.line.id).id == resp.line.id


# ---------------------------------------------------------------------------
# 2. Idempotency and generated credentials
# ---------------------------------------------------------------------------

def test_replayed_create_returns_the_first_line_and_charges_once(p, shop):
    r = p.reseller(shop.t, credits=100)
    req = L.CreateLineRequest(package_id=shop.pkg.id, notes="first", idempotency_key=ikey())
    first = r.lines.CreateLine(req)
    # Generated credentials: returned, and shown again by GetLine.
    assert first.line.username and first.line.password and len(first.line.password) >= 8
    again = get(r, first.line.id)
    assert (again.username, again.password) == (first.line.username, first.line.password)
    assert get(r, username=first.line.username).id == first.line.id
    for _ in range(2):
        replay = r.lines.CreateLine(req)
        assert replay.line.id == first.line.id
        assert replay.charge_entry_id == first.charge_entry_id
        assert replay.credits_charged == first.credits_charged == COST
        assert replay.balance_after == first.balance_after == 100 - COST
        assert (replay.line.username, replay.line.password) == (first.line.username, first.line.password)
    assert charges_of_line(p, shop.tenant, first.line.id) == [first.charge_entry_id]
    assert p.balance(r) == 100 - COST
    # The same key with another request.
    before = state(p, shop.tenant)
    other = L.CreateLineRequest(package_id=shop.pkg.id, notes="second", idempotency_key=req.idempotency_key)
    msg = expect("FAILED_PRECONDITION", r.lines.CreateLine, other)
    assert "idempotency_key" in msg
    assert state(p, shop.tenant) == before
    # Given credentials are kept as given.
    name, pw = uniq("given"), "Given-pw.1~"
    line = create(r, shop.pkg, username=name, password=pw).line
    assert (line.username, line.password) == (name, pw)
    assert get(r, username=name).password == pw


def test_a_create_carrying_a_password_is_fingerprinted_with_the_server_key(p, shop):
    """The idempotency row keeps a keyed BLAKE2b of the request, never a plain
    one: a plain hash of a request holding a line's password would let a
    reader of the table test password guesses offline."""
    import hashlib
    r = p.reseller(shop.t, credits=100)
    req = L.CreateLineRequest(package_id=shop.pkg.id, username=uniq("fp"), password="Guessable-pw-1",
                              idempotency_key=ikey())
    r.lines.CreateLine(req)
    rows = p.rows("SELECT encode(request_hash, 'hex') FROM frontdesk.idempotency"
                  f" WHERE tenant_id = {shop.tenant} AND service = 'linesd'"
                  f" AND idem_key LIKE 'CreateLine/%/{req.idempotency_key}'")
    assert len(rows) == 1, rows
    stored = rows[0][0]
    packed = req.SerializeToString()
    assert stored != hashlib.blake2b(packed, digest_size=32).hexdigest()
    key = bytes.fromhex(fdstack.fdtest.TEST_HASH_KEY)
    assert stored == hashlib.blake2b(packed, digest_size=32, key=key).hexdigest()


@pytest.mark.parametrize("username", ["", "given"])
def test_one_create_key_from_8_clients_at_once_makes_one_line(p, shop, username):
    r = p.reseller(shop.t, credits=100)
    req = L.CreateLineRequest(package_id=shop.pkg.id, idempotency_key=ikey(),
                              username=uniq("race") if username else "")
    barrier = threading.Barrier(8)

    def one(_):
        barrier.wait()
        return outcome(r.lines.CreateLine, req)

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(8)))
    assert [c for c, _ in results] == ["OK"] * 8, results
    assert len({w.line.id for _, w in results}) == 1
    assert len({w.charge_entry_id for _, w in results}) == 1
    line_id = results[0][1].line.id
    assert charges_of_line(p, shop.tenant, line_id) == [results[0][1].charge_entry_id]
    assert p.balance(r) == 100 - COST
    assert line_rows(p, shop.tenant, r.id) == 1
    assert pending(p, shop.tenant) == 0


# ---------------------------------------------------------------------------
# 3. linesd killed between billingd's Charge and its own commit
# ---------------------------------------------------------------------------

def crash(p, who, method, req):
    """Run `method` on a replica that kills itself right after the Charge;
    returns the code the caller got."""
    svc = p.replace_linesd(0, FAULT)
    code, what = outcome(ready, who.lines, method, req)
    assert code != "OK", what
    assert code in ("UNAVAILABLE", "UNKNOWN", "INTERNAL", "CANCELLED"), (code, what)
    svc.proc.wait(timeout=10)
    assert svc.proc.poll() is not None, "linesd should have killed itself after the charge"
    return code


def test_killed_after_charge_then_the_same_create_completes_it(p, shop):
    r = p.reseller(shop.t, credits=100)
    name = uniq("crash")
    req = L.CreateLineRequest(package_id=shop.pkg.id, username=name, idempotency_key=ikey())
    try:
        crash(p, r, "CreateLine", req)
        # billingd made the charge; linesd's row is still pending, the line invisible.
        entries = charges_of_reseller(p, shop.tenant, r.id)
        assert len(entries) == 1
        assert p.rows(f"SELECT kind, state FROM frontdesk.line_charges WHERE tenant_id = {shop.tenant}"
                      f" AND reseller_id = {r.id}") == [["create", "pending"]]
        assert p.balance(r) == 100 - COST
        p.replace_linesd(0)
        expect("NOT_FOUND", ready, r.lines, "GetLine", L.GetLineRequest(username=name))
        resp = ready(r.lines, "CreateLine", req)
    finally:
        restore_linesd(p)
    assert resp.line.username == name and resp.line.status == ACTIVE
    assert resp.charge_entry_id == entries[0]
    assert charges_of_line(p, shop.tenant, resp.line.id) == entries
    assert charges_of_reseller(p, shop.tenant, r.id) == entries
    assert resp.balance_after == 100 - COST
    assert p.balance(r) == 100 - COST
    assert get(r, username=name).id == resp.line.id
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


def test_killed_after_charge_then_reconciliation_completes_it(p, shop):
    r = p.reseller(shop.t, credits=100)
    name = uniq("recon")
    req = L.CreateLineRequest(package_id=shop.pkg.id, username=name, idempotency_key=ikey())
    try:
        crash(p, r, "CreateLine", req)
        entries = charges_of_reseller(p, shop.tenant, r.id)
        assert len(entries) == 1
        assert pending(p, shop.tenant) == 1
        p.replace_linesd(0, RECONCILE)
        settled = wait_for(lambda: p.sql(
            f"SELECT state FROM frontdesk.line_charges WHERE tenant_id = {shop.tenant}"
            f" AND reseller_id = {r.id}") == "applied", timeout=10)
        assert settled, "the reconciliation pass did not settle the pending charge within 10 s"
        line = ready(r.lines, "GetLine", L.GetLineRequest(username=name)).line
        assert line.status == ACTIVE
        assert charges_of_line(p, shop.tenant, line.id) == entries
        assert p.balance(r) == 100 - COST
        # The retry of the same request answers that line, charging nothing more.
        resp = ready(r.lines, "CreateLine", req)
    finally:
        restore_linesd(p)
    assert resp.line.id == line.id and resp.charge_entry_id == entries[0]
    assert charges_of_reseller(p, shop.tenant, r.id) == entries
    assert p.balance(r) == 100 - COST
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


def test_killed_after_extension_charge_then_the_same_extend_completes_it(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    req = L.ExtendLineRequest(line_id=line.id, idempotency_key=ikey())
    try:
        crash(p, r, "ExtendLine", req)
        ext = charges_of_line(p, shop.tenant, line.id, "line_extended")
        assert len(ext) == 1
        assert p.balance(r) == 100 - 2 * COST
        p.replace_linesd(0)
        assert ready(r.lines, "GetLine", L.GetLineRequest(line_id=line.id)).line.expires_at == line.expires_at
        resp = ready(r.lines, "ExtendLine", req)
        again = ready(r.lines, "ExtendLine", req)
    finally:
        restore_linesd(p)
    assert resp.line.expires_at == line.expires_at + DAYS * DAY
    assert again.line.expires_at == resp.line.expires_at
    assert resp.charge_entry_id == again.charge_entry_id == ext[0]
    assert charges_of_line(p, shop.tenant, line.id, "line_extended") == ext
    assert len(charges_of_line(p, shop.tenant, line.id)) == 2
    assert p.balance(r) == 100 - 2 * COST
    assert get(r, line.id).expires_at == line.expires_at + DAYS * DAY
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


def test_killed_after_extension_charge_of_a_line_deleted_meanwhile_refunds_it(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    req = L.ExtendLineRequest(line_id=line.id, idempotency_key=ikey())
    try:
        crash(p, r, "ExtendLine", req)
        ext = charges_of_line(p, shop.tenant, line.id, "line_extended")
        assert len(ext) == 1 and p.balance(r) == 100 - 2 * COST
        p.replace_linesd(0)
        ready(shop.t.lines, "DeleteLine", L.DeleteLineRequest(line_id=line.id))
        # The retry settles the pending extension: the line is gone, so the
        # charge is given back and nothing stays pending.
        code, what = outcome(ready, r.lines, "ExtendLine", req)
    finally:
        restore_linesd(p)
    assert code == "NOT_FOUND" and "refunded" in what, (code, what)
    assert p.balance(r) == 100 - COST
    refunds = p.rows(f"SELECT amount FROM frontdesk.ledger_entries WHERE tenant_id = {shop.tenant}"
                     f" AND kind = 'refund' AND refund_of = {ext[0]}")
    assert refunds == [[str(COST)]]
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


# ---------------------------------------------------------------------------
# 4. ExtendLine
# ---------------------------------------------------------------------------

def test_extend_from_expiry_or_now_by_periods_and_idempotent(p, shop):
    r = p.reseller(shop.t, credits=200)
    line = create(r, shop.pkg).line

    # In the future: from the current expiry.
    e1 = r.lines.ExtendLine(line_id=line.id, idempotency_key=ikey())
    assert e1.line.expires_at == line.expires_at + DAYS * DAY
    assert e1.credits_charged == COST and e1.balance_after == 200 - 2 * COST
    assert e1.charge_entry_id in charges_of_line(p, shop.tenant, line.id, "line_extended")

    # periods=3: three durations for three times the cost.
    req = L.ExtendLineRequest(line_id=line.id, periods=3, idempotency_key=ikey())
    e3 = r.lines.ExtendLine(req)
    assert e3.line.expires_at == e1.line.expires_at + 3 * DAYS * DAY
    assert e3.credits_charged == 3 * COST and e3.balance_after == 200 - 5 * COST
    # A replay answers the same and charges nothing.
    replay = r.lines.ExtendLine(req)
    assert replay.charge_entry_id == e3.charge_entry_id
    assert replay.line.expires_at == e3.line.expires_at
    assert replay.credits_charged == 3 * COST and replay.balance_after == e3.balance_after
    assert len(charges_of_line(p, shop.tenant, line.id)) == 3
    assert p.balance(r) == 200 - 5 * COST
    # The same key with another request.
    before = state(p, shop.tenant)
    expect("FAILED_PRECONDITION", r.lines.ExtendLine, line_id=line.id, periods=2,
           idempotency_key=req.idempotency_key)
    assert state(p, shop.tenant) == before

    # Already expired: from now.
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() - interval '1 day'"
          f" WHERE tenant_id = {shop.tenant} AND id = {line.id}")
    assert get(r, line.id).status == EXPIRED
    now = time.time()
    e = r.lines.ExtendLine(line_id=line.id, idempotency_key=ikey())
    assert abs(e.line.expires_at - (now + DAYS * DAY)) <= 5
    assert e.line.status == ACTIVE and get(r, line.id).status == ACTIVE
    assert p.balance(r) == 200 - 6 * COST
    assert p.books_balance(shop.tenant)


def test_extend_without_enough_credits_changes_nothing(p, shop):
    r = p.reseller(shop.t, credits=COST + 5)
    line = create(r, shop.pkg).line
    before = state(p, shop.tenant)
    msg = expect("FAILED_PRECONDITION", r.lines.ExtendLine, line_id=line.id, idempotency_key=ikey())
    assert says_credits(msg), msg
    msg = expect("FAILED_PRECONDITION", r.lines.ExtendLine, line_id=line.id, periods=3, idempotency_key=ikey())
    assert says_credits(msg), msg
    assert state(p, shop.tenant) == before
    assert get(r, line.id).expires_at == line.expires_at
    assert p.balance(r) == 5
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


def test_extend_with_another_package_takes_its_terms(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    e = r.lines.ExtendLine(line_id=line.id, package_id=shop.other.package.id, idempotency_key=ikey())
    assert e.line.package_id == shop.other.package.id
    assert e.line.expires_at == line.expires_at + 10 * DAY
    assert e.line.max_connections == 4 and list(e.line.bouquet_ids) == [shop.other.bouquet]
    assert e.credits_charged == 5 and p.balance(r) == 100 - COST - 5


def test_extend_from_8_clients_at_once(p, shop):
    r = p.reseller(shop.t, credits=200)
    line = create(r, shop.pkg).line
    # One key from 8 clients: one extension, one charge.
    req = L.ExtendLineRequest(line_id=line.id, idempotency_key=ikey())
    barrier = threading.Barrier(8)

    def same(_):
        barrier.wait()
        return outcome(r.lines.ExtendLine, req)

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(same, range(8)))
    assert [c for c, _ in results] == ["OK"] * 8, results
    assert len({w.charge_entry_id for _, w in results}) == 1
    assert get(r, line.id).expires_at == line.expires_at + DAYS * DAY
    assert len(charges_of_line(p, shop.tenant, line.id, "line_extended")) == 1
    # 8 keys at once: 8 extensions, each counted.
    barrier = threading.Barrier(8)

    def each(_):
        barrier.wait()
        return outcome(r.lines.ExtendLine, line_id=line.id, idempotency_key=ikey())

    with ThreadPoolExecutor(8) as ex:
        codes = [c for c, _ in ex.map(each, range(8))]
    assert codes == ["OK"] * 8, codes
    assert get(r, line.id).expires_at == line.expires_at + 9 * DAYS * DAY
    assert len(charges_of_line(p, shop.tenant, line.id, "line_extended")) == 9
    assert p.balance(r) == 200 - 10 * COST
    assert pending(p, shop.tenant) == 0
    assert p.books_balance(shop.tenant)


# ---------------------------------------------------------------------------
# 5. Expiry at read time, expires_within
# ---------------------------------------------------------------------------

def test_status_expires_at_read_time(p, shop):
    r = p.reseller(shop.t, credits=100)
    soon = create(r, shop.pkg).line
    stays = create(r, shop.pkg).line
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() + interval '2 seconds'"
          f" WHERE tenant_id = {shop.tenant} AND id = {soon.id}")
    t0 = time.time()
    assert get(r, soon.id).status == ACTIVE
    assert ids(r.lines.ListLines(status=EXPIRED)) == []
    time.sleep(max(0.0, 2.5 - (time.time() - t0)))
    assert get(r, soon.id).status == EXPIRED
    assert get(r, username=soon.username).status == EXPIRED
    assert ids(r.lines.ListLines(status=EXPIRED)) == [soon.id]
    assert ids(r.lines.ListLines(status=ACTIVE)) == [stays.id]
    # DISABLED and BANNED take precedence over EXPIRED.
    assert r.lines.SetLineStatus(line_id=soon.id, status=DISABLED).line.status == DISABLED
    assert ids(r.lines.ListLines(status=EXPIRED)) == []
    assert ids(r.lines.ListLines(status=DISABLED)) == [soon.id]


def test_list_lines_expiring_within(p, shop):
    r = p.reseller(shop.t, credits=100)
    made = [create(r, shop.pkg).line.id for _ in range(5)]
    for line_id, when in zip(made, ["now() + interval '3 days'", None, "now() + interval '6 days'",
                                    "now() - interval '1 day'", "now() + interval '8 days'"]):
        if when:
            p.sql(f"UPDATE frontdesk.lines SET expires_at = {when}"
                  f" WHERE tenant_id = {shop.tenant} AND id = {line_id}")
    now = int(time.time())
    week = C.TimeRange(start_at=now, end_at=now + 7 * DAY)
    assert ids(r.lines.ListLines(expires_within=week)) == [made[0], made[2]]
    assert ids(shop.t.lines.ListLines(expires_within=week, reseller_id=r.id)) == [made[0], made[2]]


# ---------------------------------------------------------------------------
# 6. Trials
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trials(p):
    """A tenant of its own (trials_per_day is per tenant) with 3 trials a day."""
    t = p.tenant()
    paid = p.catalog(t, cost=COST, days=DAYS)
    trial = p.catalog(t, cost=0, days=1, trial=True)
    s = t.lines.UpdateLinesSettings(trials_per_day=C.OptionalInt32(value=3)).settings
    assert s.trials_per_day == 3
    r = p.reseller(t)
    expect("PERMISSION_DENIED", r.lines.UpdateLinesSettings, trials_per_day=C.OptionalInt32(value=100))
    assert t.lines.GetLinesSettings().settings.trials_per_day == 3
    return ns(t=t, tenant=t.tenant, pkg=paid.package, trial=trial.package)


def trial(who, pkg, **kw):
    kw.setdefault("idempotency_key", ikey())
    return who.lines.CreateTrialLine(package_id=pkg.id, **kw)


def test_trials_need_the_permission_and_a_trial_package(p, trials):
    before = state(p, trials.tenant)
    nope = p.reseller(trials.t, perms=(SUB,))
    expect("PERMISSION_DENIED", trial, nope, trials.trial)
    r = p.reseller(trials.t, credits=100)
    msg = expect("INVALID_ARGUMENT", create, r, trials.trial)
    assert "package" in msg
    msg = expect("INVALID_ARGUMENT", trial, r, trials.pkg)
    assert "package" in msg
    assert state(p, trials.tenant)["lines"] == before["lines"]
    assert state(p, trials.tenant)["charges"] == before["charges"]
    assert p.balance(r) == 100


def test_trials_per_rolling_24_hours(p, trials):
    r = p.reseller(trials.t)
    made = []
    first = L.CreateTrialLineRequest(package_id=trials.trial.id, idempotency_key=ikey())
    for left in (2, 1, 0):
        resp = r.lines.CreateTrialLine(first) if not made else trial(r, trials.trial)
        assert resp.line.trial and resp.line.status == ACTIVE
        assert resp.trials_left == left
        assert resp.charge_entry_id == 0 and resp.credits_charged == 0
        made.append(resp)
    # A replay of the first is its answer, not a fourth trial.
    again = r.lines.CreateTrialLine(first)
    assert again.line.id == made[0].line.id
    expect("RESOURCE_EXHAUSTED", trial, r, trials.trial)
    # Deleting a trial line does not give the trial back.
    r.lines.DeleteLine(line_id=made[0].line.id)
    expect("RESOURCE_EXHAUSTED", trial, r, trials.trial)
    # The window is the real rolling 24 hours: the oldest trial leaves it.
    p.sql(f"UPDATE frontdesk.line_charges SET created_at = created_at - interval '25 hours'"
          f" WHERE tenant_id = {trials.tenant} AND id = (SELECT min(id) FROM frontdesk.line_charges"
          f"  WHERE tenant_id = {trials.tenant} AND reseller_id = {r.id} AND trial)")
    fourth = trial(r, trials.trial)
    assert fourth.trials_left == 0
    expect("RESOURCE_EXHAUSTED", trial, r, trials.trial)
    assert {x.id for x in r.lines.ListLines(trial_only=True).lines} == \
        {made[1].line.id, made[2].line.id, fourth.line.id}
    assert p.balance(r) == 0


def test_trials_replay(p, trials):
    r = p.reseller(trials.t)
    req = L.CreateTrialLineRequest(package_id=trials.trial.id, idempotency_key=ikey())
    first = r.lines.CreateTrialLine(req)
    again = r.lines.CreateTrialLine(req)
    assert again.line.id == first.line.id and again.line.password == first.line.password
    assert count(p, f"SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = {trials.tenant}"
                    f" AND reseller_id = {r.id} AND trial") == 1
    assert trial(r, trials.trial).trials_left == 1


def test_trials_from_8_clients_at_once_respect_the_limit(p, trials):
    r = p.reseller(trials.t)
    barrier = threading.Barrier(8)

    def one(_):
        barrier.wait()
        return outcome(trial, r, trials.trial)

    with ThreadPoolExecutor(8) as ex:
        codes = [c for c, _ in ex.map(one, range(8))]
    assert codes.count("OK") == 3, codes
    assert codes.count("RESOURCE_EXHAUSTED") == 5, codes
    assert line_rows(p, trials.tenant, r.id) == 3


# ---------------------------------------------------------------------------
# 7. ListLines: subtree, filters, paging
# ---------------------------------------------------------------------------

def test_list_lines_subtree_filters_and_paging(p, shop):
    t = shop.t
    r1 = p.reseller(t, credits=500)
    sub = p.reseller(t, creator=r1, parent_id=r1.id, credits=100)
    sib = p.reseller(t, credits=100)
    mark = uniq("zq").replace("-", "")
    own = [create(r1, shop.pkg, username=f"{mark}.own{i}").line.id for i in range(5)]
    # A line r1 sells for its sub-reseller: the sub-reseller owns and pays.
    for_sub = create(r1, shop.pkg, reseller_id=sub.id, username=f"{mark}.sub0")
    assert for_sub.line.reseller_id == sub.id and p.balance(sub) == 100 - COST
    subs = [for_sub.line.id, create(sub, shop.pkg, username=f"{mark}.sub1").line.id]
    sibs = [create(sib, shop.pkg, username=f"{mark}.sib0").line.id]

    assert sorted(x.id for x in all_lines(r1)) == sorted(own + subs)
    assert sorted(x.id for x in all_lines(sub)) == sorted(subs)
    assert sorted(x.id for x in all_lines(sib)) == sorted(sibs)
    assert sorted(x.id for x in all_lines(r1, reseller_id=sub.id)) == sorted(subs)
    assert sorted(x.id for x in all_lines(r1, reseller_id=r1.id)) == sorted(own + subs)
    assert sorted(x.id for x in all_lines(r1, reseller_id=r1.id, direct_only=True)) == sorted(own)
    expect("NOT_FOUND", r1.lines.ListLines, reseller_id=sib.id)
    expect("NOT_FOUND", sub.lines.ListLines, reseller_id=r1.id)
    # username_query (contains, case-insensitive).
    assert sorted(x.id for x in all_lines(r1, username_query=f"{mark}.SUB")) == sorted(subs)
    assert sorted(x.id for x in all_lines(r1, username_query=mark)) == sorted(own + subs)
    assert all_lines(r1, username_query=f"{mark}.sib") == []
    # The tenant admin sees everything.
    everything = {x.id for x in all_lines(t, username_query=mark)}
    assert everything == set(own + subs + sibs)
    # Paging: 2 + 2 + 1.
    pages, token = [], ""
    while True:
        resp = r1.lines.ListLines(reseller_id=r1.id, direct_only=True, page_size=2, page_token=token)
        pages.append([x.id for x in resp.lines])
        token = resp.next_page_token
        if not token:
            break
        assert len(pages) < 10
    assert [len(x) for x in pages] == [2, 2, 1]
    assert [i for pg in pages for i in pg] == sorted(own)
    # package filter.
    assert sorted(x.id for x in all_lines(r1, package_id=shop.pkg.id)) == sorted(own + subs)


# ---------------------------------------------------------------------------
# 8. UpdateLine
# ---------------------------------------------------------------------------

def test_update_line(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg, allowed_ips=["10.0.0.0/8"], allowed_user_agents=["VLC/3.0"],
                  notes="first").line
    assert list(line.allowed_ips) == ["10.0.0.0/8"] and line.max_connections == 2

    # Connections: a reseller within the package's 2, the tenant admin beyond it.
    msg = expect("INVALID_ARGUMENT", r.lines.UpdateLine, line_id=line.id,
                 max_connections=C.OptionalInt32(value=3))
    assert "max_connections" in msg
    assert get(r, line.id).max_connections == 2
    assert r.lines.UpdateLine(line_id=line.id, max_connections=C.OptionalInt32(value=1)).line.max_connections == 1
    assert shop.t.lines.UpdateLine(line_id=line.id,
                                   max_connections=C.OptionalInt32(value=5)).line.max_connections == 5
    assert get(r, line.id).max_connections == 5

    # Lists replace the stored ones; unset fields stay.
    u = r.lines.UpdateLine(line_id=line.id, allowed_ips=C.StringList(values=["192.168.1.0/24", "2001:db8::/32"]))
    assert list(u.line.allowed_ips) == ["192.168.1.0/24", "2001:db8::/32"]
    assert list(u.line.allowed_user_agents) == ["VLC/3.0"] and u.line.notes == "first"
    u = r.lines.UpdateLine(line_id=line.id, allowed_user_agents=C.StringList(values=["Kodi/20", "TiviMate"]))
    assert list(u.line.allowed_user_agents) == ["Kodi/20", "TiviMate"]
    assert list(u.line.allowed_ips) == ["192.168.1.0/24", "2001:db8::/32"]
    u = r.lines.UpdateLine(line_id=line.id, notes=C.OptionalString(value="second"))
    assert u.line.notes == "second"
    u = r.lines.UpdateLine(line_id=line.id, allowed_ips=C.StringList(values=[]))
    assert list(u.line.allowed_ips) == [] and list(u.line.allowed_user_agents) == ["Kodi/20", "TiviMate"]
    got = get(r, line.id)
    assert (list(got.allowed_ips), list(got.allowed_user_agents), got.notes) == \
        ([], ["Kodi/20", "TiviMate"], "second")

    # Passwords.
    u = r.lines.UpdateLine(line_id=line.id, new_password="New-pw.42")
    assert u.line.password == "New-pw.42" and get(r, line.id).password == "New-pw.42"
    u = r.lines.UpdateLine(line_id=line.id, generate_password=True)
    assert u.line.password and u.line.password != "New-pw.42"
    assert get(r, line.id).password == u.line.password
    before = state(p, shop.tenant)
    msg = expect("INVALID_ARGUMENT", r.lines.UpdateLine, line_id=line.id, new_password="Other-pw.1",
                 generate_password=True)
    assert "password" in msg
    assert state(p, shop.tenant) == before
    assert get(r, line.id).password == u.line.password
    assert p.balance(r) == 100 - COST


# ---------------------------------------------------------------------------
# 9. SetLineStatus
# ---------------------------------------------------------------------------

def test_set_line_status(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    assert r.lines.SetLineStatus(line_id=line.id, status=DISABLED, reason="unpaid").line.status == DISABLED
    assert get(r, line.id).status == DISABLED
    assert r.lines.SetLineStatus(line_id=line.id, status=ACTIVE).line.status == ACTIVE
    assert r.lines.SetLineStatus(line_id=line.id, status=BANNED, reason="abuse").line.status == BANNED
    msg = expect("PERMISSION_DENIED", r.lines.SetLineStatus, line_id=line.id, status=ACTIVE)
    assert "ban" in msg
    expect("PERMISSION_DENIED", r.lines.SetLineStatus, line_id=line.id, status=DISABLED)
    assert get(r, line.id).status == BANNED
    for bad in (EXPIRED, L.LINE_STATUS_UNSPECIFIED, 99):
        msg = expect("INVALID_ARGUMENT", shop.t.lines.SetLineStatus, line_id=line.id, status=bad)
        assert "status" in msg
    assert get(r, line.id).status == BANNED
    assert shop.t.lines.SetLineStatus(line_id=line.id, status=ACTIVE).line.status == ACTIVE
    assert get(r, line.id).status == ACTIVE
    expect("INVALID_ARGUMENT", r.lines.SetLineStatus, line_id=line.id, status=EXPIRED)
    assert get(r, line.id).status == ACTIVE


# ---------------------------------------------------------------------------
# 10. DeleteLine and refunds
# ---------------------------------------------------------------------------

def refunds_of(p, tenant, reseller):
    return p.rows(f"SELECT id, amount, refund_of FROM frontdesk.ledger_entries WHERE tenant_id = {tenant}"
                  f" AND kind = 'refund' AND to_account = {reseller} ORDER BY id")


def test_delete_line_with_and_without_refund(p, shop):
    t = shop.t
    r = p.reseller(t, credits=100)
    made = create(r, shop.pkg)
    line = made.line

    # Only tenant admins refund.
    msg = expect("PERMISSION_DENIED", r.lines.DeleteLine, line_id=line.id, refund_credits=COST,
                 idempotency_key=ikey())
    assert "refund" in msg
    assert get(r, line.id).id == line.id
    # At most what was charged.
    before = state(p, shop.tenant)
    msg = expect("FAILED_PRECONDITION", t.lines.DeleteLine, line_id=line.id, refund_credits=COST + 1,
                 idempotency_key=ikey())
    assert "refund" in msg
    assert state(p, shop.tenant) == before
    assert get(r, line.id).id == line.id and p.balance(r) == 100 - COST

    # The whole charge back.
    req = L.DeleteLineRequest(line_id=line.id, refund_credits=COST, idempotency_key=ikey())
    d = t.lines.DeleteLine(req)
    assert d.credits_refunded == COST and d.refund_entry_id > 0
    assert p.balance(r) == 100
    assert refunds_of(p, shop.tenant, r.id) == [[str(d.refund_entry_id), str(COST), str(made.charge_entry_id)]]
    expect("NOT_FOUND", r.lines.GetLine, line_id=line.id)
    expect("NOT_FOUND", t.lines.GetLine, username=line.username)
    # A replay answers the same and refunds nothing more.
    again = t.lines.DeleteLine(req)
    assert (again.refund_entry_id, again.credits_refunded) == (d.refund_entry_id, COST)
    assert p.balance(r) == 100 and len(refunds_of(p, shop.tenant, r.id)) == 1
    expect("FAILED_PRECONDITION", t.lines.DeleteLine, line_id=line.id, refund_credits=COST - 1,
           idempotency_key=req.idempotency_key)
    assert p.books_balance(shop.tenant)

    # Without a refund: deleted, nothing given back.
    other = create(r, shop.pkg).line
    d = r.lines.DeleteLine(line_id=other.id)
    assert (d.refund_entry_id, d.credits_refunded) == (0, 0)
    expect("NOT_FOUND", r.lines.GetLine, line_id=other.id)
    assert p.balance(r) == 100 - COST
    assert len(refunds_of(p, shop.tenant, r.id)) == 1
    expect("NOT_FOUND", r.lines.DeleteLine, line_id=other.id)
    # A partial refund of a line charged twice: the newest charge first.
    third = create(r, shop.pkg)
    r.lines.ExtendLine(line_id=third.line.id, idempotency_key=ikey())
    ext = charges_of_line(p, shop.tenant, third.line.id, "line_extended")
    d = t.lines.DeleteLine(line_id=third.line.id, refund_credits=COST + 3, idempotency_key=ikey())
    assert d.credits_refunded == COST + 3
    assert p.balance(r) == 100 - 3 * COST + COST + 3
    assert [x[1:] for x in refunds_of(p, shop.tenant, r.id)[1:]] == \
        [[str(COST), str(ext[0])], ["3", str(third.charge_entry_id)]]
    assert p.books_balance(shop.tenant)


def test_one_delete_key_from_8_clients_at_once_refunds_once(p, shop):
    t = shop.t
    r = p.reseller(t, credits=100)
    line = create(r, shop.pkg).line
    req = L.DeleteLineRequest(line_id=line.id, refund_credits=COST, idempotency_key=ikey())
    barrier = threading.Barrier(8)

    def one(_):
        barrier.wait()
        return outcome(t.lines.DeleteLine, req)

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(8)))
    assert [c for c, _ in results] == ["OK"] * 8, results
    assert len({(w.refund_entry_id, w.credits_refunded) for _, w in results}) == 1
    assert len(refunds_of(p, shop.tenant, r.id)) == 1
    assert p.balance(r) == 100


def test_two_refunding_deletes_at_once_refund_once(p, shop):
    t = shop.t
    r = p.reseller(t, credits=100)
    line = create(r, shop.pkg).line
    barrier = threading.Barrier(2)

    def one(_):
        barrier.wait()
        return outcome(t.lines.DeleteLine, line_id=line.id, refund_credits=COST, idempotency_key=ikey())

    with ThreadPoolExecutor(2) as ex:
        codes = sorted(c for c, _ in ex.map(one, range(2)))
    assert codes == ["NOT_FOUND", "OK"], codes
    assert len(refunds_of(p, shop.tenant, r.id)) == 1
    assert p.balance(r) == 100
    assert p.books_balance(shop.tenant)


# ---------------------------------------------------------------------------
# 11. Isolation
# ---------------------------------------------------------------------------

def lines_calls(line, tenant_id=0):
    """One call of every Lines method that names a line."""
    return {
        "GetLine": dict(tenant_id=tenant_id, line_id=line.id),
        "GetLine(username)": dict(tenant_id=tenant_id, username=line.username),
        "UpdateLine": dict(tenant_id=tenant_id, line_id=line.id, notes=C.OptionalString(value="mine now")),
        "UpdateLine(password)": dict(tenant_id=tenant_id, line_id=line.id, new_password="stolen-pw"),
        "ExtendLine": dict(tenant_id=tenant_id, line_id=line.id, idempotency_key=ikey()),
        "SetLineStatus": dict(tenant_id=tenant_id, line_id=line.id, status=DISABLED),
        "DeleteLine": dict(tenant_id=tenant_id, line_id=line.id),
    }


def call_named(who, name, kw):
    method = getattr(who.lines, name.split("(")[0])
    return outcome(method, **kw)


def test_isolation_between_tenants_and_siblings(p, shop):
    t = shop.t
    r = p.reseller(t, credits=100)
    sib = p.reseller(t, credits=100)
    sub = p.reseller(t, creator=r, parent_id=r.id, credits=100)
    line = create(r, shop.pkg, username=uniq("iso")).line
    u = p.tenant()
    upkg = p.catalog(u, cost=1).package
    ur = p.reseller(u, credits=100)
    mine = create(ur, upkg).line
    before = state(p, shop.tenant)
    bal = {x.id: p.balance(x) for x in (r, sib, sub)}

    strangers = {"other admin": u, "other reseller": ur, "sibling": sib, "sub-reseller": sub}
    for who_name, who in strangers.items():
        for name, kw in lines_calls(line).items():
            code, what = call_named(who, name, kw)
            assert code == "NOT_FOUND", (who_name, name, code, what)
        # A refund asked by the other tenant's admin.
        if who is u:
            code, what = outcome(u.lines.DeleteLine, line_id=line.id, refund_credits=1, idempotency_key=ikey())
            assert code == "NOT_FOUND", (code, what)
    # Naming the first tenant explicitly.
    for who_name, who in {"other admin": u, "other reseller": ur}.items():
        for name, kw in lines_calls(line, tenant_id=shop.tenant).items():
            code, what = call_named(who, name, kw)
            assert code == "NOT_FOUND", (who_name, name, code, what)
        for name, kw in {"ListLines": dict(tenant_id=shop.tenant),
                         "CreateLine": dict(tenant_id=shop.tenant, package_id=shop.pkg.id, idempotency_key=ikey()),
                         "CreateTrialLine": dict(tenant_id=shop.tenant, package_id=shop.trial.id,
                                                 idempotency_key=ikey())}.items():
            code, what = call_named(who, name, kw)
            assert code == "NOT_FOUND", (who_name, name, code, what)
        # Never in their lists.
        assert line.id not in {x.id for x in all_lines(who)}
        assert line.id not in {x.id for x in all_lines(who, username_query=line.username)}
    assert {x.id for x in all_lines(u)} == {mine.id}
    assert {x.id for x in all_lines(ur)} == {mine.id}
    # Reseller ids outside the subtree or the tenant.
    for who, rid in [(sib, r.id), (r, sib.id), (sub, r.id), (ur, r.id), (u, r.id)]:
        expect("NOT_FOUND", who.lines.ListLines, reseller_id=rid)
        expect("NOT_FOUND", create, who, shop.pkg, reseller_id=rid)
    # The other tenant's package.
    assert upkg.id != shop.pkg.id
    expect("NOT_FOUND", create, r, upkg)
    assert state(p, shop.tenant) == before
    assert {x.id: p.balance(x) for x in (r, sib, sub)} == bal
    assert get(r, line.id).notes == "" and get(r, line.id).status == ACTIVE
    # Its owner's tenant admin sees it (its sub-reseller, above, does not).
    assert get(t, line.id).id == line.id
    assert line.id in {x.id for x in all_lines(t)}


# ---------------------------------------------------------------------------
# 12. Bad input
# ---------------------------------------------------------------------------

BAD_CIDRS = ["300.1.1.1/8", "10.0.0.0/33", "abc", "10.0.0.5/24", "", "10.0.0.0/", "2001:db8::1/32",
             "2001:db8::/129", "10.0.0.0/-0", "1.2.3.4:80", "10.0.0.0/8/8", "10.0.0.0/8x"]
# A prefix length strtol() takes but PostgreSQL's cidr does not.
LAX_CIDRS = ["10.0.0.0/ 8", "10.0.0.0/+8", "10.0.0.0/\t8", "2001:db8::/ 32"]
MANY = 10_000


def test_bad_input_is_refused_and_writes_nothing(p, shop):
    t = shop.t
    r = p.reseller(t, credits=1000)
    line = create(r, shop.pkg).line
    pkg = shop.pkg.id
    before = state(p, shop.tenant)
    balance = p.balance(r)
    # (what, method, fields, codes allowed, text the message must contain)
    cases = []
    for cidr in BAD_CIDRS:
        cases.append(("CreateLine", dict(package_id=pkg, allowed_ips=["10.0.0.0/8", cidr], idempotency_key=ikey()),
                      "allowed_ips"))
        cases.append(("UpdateLine", dict(line_id=line.id, allowed_ips=C.StringList(values=[cidr])), "allowed_ips"))
        cases.append(("CreateTrialLine", dict(package_id=shop.trial.id, allowed_ips=[cidr], idempotency_key=ikey()),
                      "allowed_ips"))
    many_ips = [f"10.{i // 256 % 256}.{i % 256}.0/24" for i in range(MANY)]
    many_uas = [f"UA/{i}" for i in range(MANY)]
    many_ids = list(range(1, MANY + 1))
    big = "n" * 1_000_000
    cases += [
        ("CreateLine", dict(package_id=pkg, allowed_ips=many_ips, idempotency_key=ikey()), "allowed_ips"),
        ("CreateLine", dict(package_id=pkg, allowed_user_agents=many_uas, idempotency_key=ikey()),
         "allowed_user_agents"),
        ("CreateLine", dict(package_id=pkg, bouquet_ids=many_ids, idempotency_key=ikey()), "bouquet_ids"),
        ("CreateLine", dict(package_id=pkg, notes=big, idempotency_key=ikey()), "notes"),
        ("CreateLine", dict(package_id=pkg, max_connections=-1, idempotency_key=ikey()), "max_connections"),
        ("CreateLine", dict(package_id=pkg, max_connections=1001, idempotency_key=ikey()), "max_connections"),
        ("CreateLine", dict(package_id=pkg, max_connections=3, idempotency_key=ikey()), "max_connections"),
        ("CreateLine", dict(package_id=0, idempotency_key=ikey()), "package_id"),
        ("CreateLine", dict(package_id=-5, idempotency_key=ikey()), "package_id"),
        ("CreateLine", dict(package_id=pkg, bouquet_ids=[shop.cat.bouquet, shop.cat.bouquet],
                            idempotency_key=ikey()), "bouquet_ids"),
        ("CreateLine", dict(package_id=pkg, bouquet_ids=[-1], idempotency_key=ikey()), "bouquet_ids"),
        ("CreateLine", dict(package_id=pkg, idempotency_key=""), "idempotency_key"),
        ("CreateLine", dict(package_id=pkg, reseller_id=-1, idempotency_key=ikey()), "reseller_id"),
        ("CreateLine", dict(package_id=pkg, password="a b c d", idempotency_key=ikey()), "password"),
        ("CreateLine", dict(package_id=pkg, password="abc", idempotency_key=ikey()), "password"),
        ("CreateLine", dict(package_id=pkg, username="x" * 65, idempotency_key=ikey()), "username"),
        ("UpdateLine", dict(line_id=line.id, allowed_ips=C.StringList(values=many_ips)), "allowed_ips"),
        ("UpdateLine", dict(line_id=line.id, allowed_user_agents=C.StringList(values=many_uas)),
         "allowed_user_agents"),
        ("UpdateLine", dict(line_id=line.id, bouquet_ids=C.Int64List(values=many_ids)), "bouquet_ids"),
        ("UpdateLine", dict(line_id=line.id, notes=C.OptionalString(value=big)), "notes"),
        ("UpdateLine", dict(line_id=line.id, max_connections=C.OptionalInt32(value=-1)), "max_connections"),
        ("UpdateLine", dict(line_id=line.id, max_connections=C.OptionalInt32(value=0)), "max_connections"),
        ("UpdateLine", dict(line_id=line.id, new_password="has space"), "new_password"),
        ("UpdateLine", dict(line_id=line.id, new_password="x\x01yz"), "new_password"),
        ("UpdateLine", dict(line_id=line.id, bandwidth_cap_kbps=C.OptionalInt64(value=-1)), "bandwidth_cap_kbps"),
        ("UpdateLine", dict(line_id=0, notes=C.OptionalString(value="x")), "line_id"),
        ("ExtendLine", dict(line_id=line.id, periods=-1, idempotency_key=ikey()), "periods"),
        ("ExtendLine", dict(line_id=line.id, periods=121, idempotency_key=ikey()), "periods"),
        ("ExtendLine", dict(line_id=line.id, idempotency_key=""), "idempotency_key"),
        ("ExtendLine", dict(line_id=line.id, package_id=-1, idempotency_key=ikey()), "package_id"),
        ("ExtendLine", dict(line_id=line.id, package_id=shop.trial.id, idempotency_key=ikey()), "package"),
        ("CreateTrialLine", dict(package_id=shop.trial.id, allowed_ips=many_ips, idempotency_key=ikey()),
         "allowed_ips"),
        ("CreateTrialLine", dict(package_id=shop.trial.id, notes=big, idempotency_key=ikey()), "notes"),
        ("CreateTrialLine", dict(package_id=shop.trial.id, idempotency_key=""), "idempotency_key"),
        ("DeleteLine", dict(line_id=line.id, refund_credits=-1), "refund_credits"),
        ("SetLineStatus", dict(line_id=line.id, status=EXPIRED), "status"),
        ("SetLineStatus", dict(line_id=line.id, status=DISABLED, reason="r" * 501), "reason"),
        ("GetLine", dict(), "line_id"),
        ("GetLine", dict(username="x" * 65), "username"),
        ("ListLines", dict(direct_only=True), "direct_only"),
        ("ListLines", dict(expires_within=C.TimeRange(start_at=10, end_at=5)), "expires_within"),
    ]
    for name in ["a\x01b", "a\nb", "a b", " lead", "tab\there", "semi;colon", "a\x7fb", "quote'x", "ünï"]:
        cases.append(("CreateLine", dict(package_id=pkg, username=name, idempotency_key=ikey()), "username"))
        cases.append(("CreateTrialLine", dict(package_id=shop.trial.id, username=name, idempotency_key=ikey()),
                      "username"))
    who = {"DeleteLine": t}
    failures = []
    for method, kw, field in cases:
        caller = who.get(method, r)
        code, what = outcome(getattr(caller.lines, method), **kw)
        if code != "INVALID_ARGUMENT" or field not in what:
            shown = {k: (v if len(repr(v)) < 80 else f"<{len(v) if hasattr(v, '__len__') else '?'} long>")
                     for k, v in kw.items()}
            failures.append((method, shown, code, what if isinstance(what, str) else "OK"))
    assert not failures, "\n".join(map(repr, failures))
    # An unknown package: NOT_FOUND (or INVALID_ARGUMENT) naming it.
    for method, kw in [("CreateLine", dict(package_id=987654321, idempotency_key=ikey())),
                       ("CreateTrialLine", dict(package_id=987654321, idempotency_key=ikey())),
                       ("ExtendLine", dict(line_id=line.id, package_id=987654321, idempotency_key=ikey()))]:
        code, what = outcome(getattr(r.lines, method), **kw)
        assert code in ("NOT_FOUND", "INVALID_ARGUMENT") and "package" in what, (method, code, what)
    assert state(p, shop.tenant) == before
    assert p.balance(r) == balance
    got = get(r, line.id)
    assert (got.notes, list(got.allowed_ips), got.max_connections, got.status) == ("", [], 2, ACTIVE)


def test_prefix_lengths_with_a_sign_or_space_are_refused_naming_the_field(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    before = state(p, shop.tenant)
    for cidr in LAX_CIDRS:
        for method, kw in [("CreateLine", dict(package_id=shop.pkg.id, allowed_ips=[cidr], idempotency_key=ikey())),
                           ("UpdateLine", dict(line_id=line.id, allowed_ips=C.StringList(values=[cidr]))),
                           ("CreateTrialLine", dict(package_id=shop.trial.id, allowed_ips=[cidr],
                                                    idempotency_key=ikey()))]:
            code, what = outcome(getattr(r.lines, method), **kw)
            assert code == "INVALID_ARGUMENT" and "allowed_ips" in what, (method, cidr, code, what)
    assert state(p, shop.tenant) == before
    assert p.balance(r) == 100 - COST


# ---------------------------------------------------------------------------
# 13. The audit trail, the status history, retries at once, text hygiene
#     (issue 12)
# ---------------------------------------------------------------------------

def audit(p, tenant, action, target):
    """The audit rows of action on target: (actor, account, role, outcome, source)."""
    return p.rows(f"SELECT actor, actor_account_id, actor_role, outcome, source FROM frontdesk.audit_events"
                  f" WHERE tenant_id = {tenant} AND action = '{action}' AND target = '{target}' ORDER BY id")


def as_reseller(r):
    return [f"reseller:{r.id}", str(r.id), "reseller", "ok", "127.0.0.1"]


def as_admin(t):
    return [f"admin:{t.id}", str(t.id), "tenant_admin", "ok", "127.0.0.1"]


def test_each_line_action_is_audited_once_with_its_actor(p, shop):
    t, tenant = shop.t, shop.tenant
    r = p.reseller(t, credits=100)
    req = L.CreateLineRequest(package_id=shop.pkg.id, idempotency_key=ikey())
    line = r.lines.CreateLine(req).line
    r.lines.CreateLine(req)                                   # a replay adds nothing
    target = f"line:{line.id}"
    assert audit(p, tenant, "line.create", target) == [as_reseller(r)]
    detail = p.sql(f"SELECT detail->>'credits_charged' || '/' || (detail->>'trial') FROM frontdesk.audit_events"
                   f" WHERE tenant_id = {tenant} AND action = 'line.create' AND target = '{target}'")
    assert detail == f"{COST}/false"
    # The path of the reseller, so its parents read its subtree's events.
    assert p.sql(f"SELECT actor_path <> '' FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND action = 'line.create' AND target = '{target}'") == "t"

    tr = trial(r, shop.trial).line
    assert audit(p, tenant, "line.create", f"line:{tr.id}") == [as_reseller(r)]
    assert p.sql(f"SELECT detail->>'trial' FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND target = 'line:{tr.id}'") == "true"

    ext = L.ExtendLineRequest(line_id=line.id, idempotency_key=ikey())
    t.lines.ExtendLine(ext)
    t.lines.ExtendLine(ext)
    assert audit(p, tenant, "line.extend", target) == [as_admin(t)]

    r.lines.SetLineStatus(line_id=line.id, status=DISABLED, reason="unpaid")
    assert audit(p, tenant, "line.set_status", target) == [as_reseller(r)]
    assert p.sql(f"SELECT detail->>'status' || '/' || (detail->>'previous_status') || '/' || (detail->>'reason')"
                 f" FROM frontdesk.audit_events WHERE tenant_id = {tenant} AND action = 'line.set_status'"
                 f" AND target = '{target}'") == "disabled/active/unpaid"
    # Refused: no row.
    t.lines.SetLineStatus(line_id=line.id, status=BANNED, reason="abuse")
    expect("PERMISSION_DENIED", r.lines.SetLineStatus, line_id=line.id, status=ACTIVE)
    assert len(audit(p, tenant, "line.set_status", target)) == 2

    t.lines.UpdateLine(line_id=line.id, notes=C.OptionalString(value="vip"), generate_password=True)
    assert audit(p, tenant, "line.update", target) == [as_admin(t)]
    fields = p.sql(f"SELECT detail->>'fields' FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                   f" AND action = 'line.update' AND target = '{target}'")
    assert fields == "notes,password"
    pw = get(r, line.id).password
    assert p.sql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND (detail::text LIKE '%{pw}%' OR actor LIKE '%{pw}%')") == "0"

    d = L.DeleteLineRequest(line_id=line.id, refund_credits=COST, idempotency_key=ikey())
    t.lines.DeleteLine(d)
    t.lines.DeleteLine(d)
    assert audit(p, tenant, "line.delete", target) == [as_admin(t)]
    assert p.sql(f"SELECT detail->>'credits_refunded' FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND action = 'line.delete' AND target = '{target}'") == str(COST)
    # A refused create leaves no row.
    poor = p.reseller(t, credits=COST - 1)
    expect("FAILED_PRECONDITION", create, poor, shop.pkg)
    assert p.sql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND actor = 'reseller:{poor.id}' AND action LIKE 'line.%'") == "0"


def test_killed_after_charge_the_reconciled_create_is_audited_once_as_the_caller(p, shop):
    r = p.reseller(shop.t, credits=100)
    name = uniq("recaudit")
    req = L.CreateLineRequest(package_id=shop.pkg.id, username=name, idempotency_key=ikey())
    try:
        crash(p, r, "CreateLine", req)
        p.replace_linesd(0, RECONCILE)
        settled = wait_for(lambda: p.sql(
            f"SELECT state FROM frontdesk.line_charges WHERE tenant_id = {shop.tenant}"
            f" AND reseller_id = {r.id}") == "applied", timeout=15)
        assert settled
        line = ready(r.lines, "GetLine", L.GetLineRequest(username=name)).line
        ready(r.lines, "CreateLine", req)
    finally:
        restore_linesd(p)
    assert audit(p, shop.tenant, "line.create", f"line:{line.id}") == [as_reseller(r)]


def test_status_changes_are_kept_as_the_lines_history(p, shop):
    t = shop.t
    r = p.reseller(t, credits=100)
    line = create(r, shop.pkg).line
    assert list(t.lines.GetLine(line_id=line.id).status_history) == []
    r.lines.SetLineStatus(line_id=line.id, status=DISABLED, reason="non-payment")
    r.lines.SetLineStatus(line_id=line.id, status=ACTIVE, reason="paid")
    t.lines.SetLineStatus(line_id=line.id, status=BANNED, reason="shared the line on a forum")
    for who in (t, r):
        h = who.lines.GetLine(line_id=line.id).status_history
        assert [(x.status, x.previous_status, x.reason, x.actor, x.actor_account_id) for x in h] == [
            (BANNED, ACTIVE, "shared the line on a forum", f"admin:{t.id}", t.id),
            (ACTIVE, DISABLED, "paid", f"reseller:{r.id}", r.id),
            (DISABLED, ACTIVE, "non-payment", f"reseller:{r.id}", r.id),
        ]
        assert all(x.changed_at > 0 for x in h)
        assert h[0].changed_at >= h[2].changed_at
    # By username too; another line's history is its own.
    assert len(t.lines.GetLine(username=line.username).status_history) == 3
    other = create(r, shop.pkg).line
    assert list(t.lines.GetLine(line_id=other.id).status_history) == []
    # Deleted with the line.
    t.lines.DeleteLine(line_id=line.id)
    assert p.sql(f"SELECT count(*) FROM frontdesk.line_status_history WHERE tenant_id = {shop.tenant}"
                 f" AND line_id = {line.id}") == "0"


def six_at_once(fn, req):
    barrier = threading.Barrier(6)

    def one(_):
        barrier.wait()
        return outcome(fn, req)

    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(one, range(6)))
    assert [c for c, _ in results] == ["OK"] * 6, results
    return [w for _, w in results]


def test_six_identical_creates_with_credits_for_one_answer_the_first(p, shop):
    r = p.reseller(shop.t, credits=COST)
    req = L.CreateLineRequest(package_id=shop.pkg.id, username=uniq("six"), idempotency_key=ikey())
    got = six_at_once(r.lines.CreateLine, req)
    assert len({(w.line.id, w.line.password, w.charge_entry_id, w.credits_charged, w.balance_after)
                for w in got}) == 1, got
    assert got[0].balance_after == 0 and got[0].credits_charged == COST
    assert charges_of_reseller(p, shop.tenant, r.id) == [got[0].charge_entry_id]
    assert line_rows(p, shop.tenant, r.id) == 1 and p.balance(r) == 0
    assert len(audit(p, shop.tenant, "line.create", f"line:{got[0].line.id}")) == 1


def test_six_identical_trials_with_a_limit_of_one_answer_the_first(p):
    t = p.tenant()
    pkg = p.catalog(t, cost=0, days=1, trial=True).package
    t.lines.UpdateLinesSettings(trials_per_day=C.OptionalInt32(value=1))
    r = p.reseller(t)
    req = L.CreateTrialLineRequest(package_id=pkg.id, username=uniq("trial6"), idempotency_key=ikey())
    got = six_at_once(r.lines.CreateTrialLine, req)
    assert len({(w.line.id, w.trials_left, w.charge_entry_id) for w in got}) == 1, got
    assert got[0].trials_left == 0
    assert line_rows(p, t.tenant, r.id) == 1
    assert len(audit(p, t.tenant, "line.create", f"line:{got[0].line.id}")) == 1
    expect("RESOURCE_EXHAUSTED", trial, r, pkg)


def test_six_identical_extends_with_credits_for_one_answer_the_first(p, shop):
    r = p.reseller(shop.t, credits=2 * COST)
    line = create(r, shop.pkg).line
    req = L.ExtendLineRequest(line_id=line.id, idempotency_key=ikey())
    got = six_at_once(r.lines.ExtendLine, req)
    assert len({(w.line.expires_at, w.charge_entry_id, w.balance_after) for w in got}) == 1, got
    assert got[0].line.expires_at == line.expires_at + DAYS * DAY
    assert charges_of_line(p, shop.tenant, line.id, "line_extended") == [got[0].charge_entry_id]
    assert p.balance(r) == 0
    assert len(audit(p, shop.tenant, "line.extend", f"line:{line.id}")) == 1


def test_six_identical_deletes_answer_the_first(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    got = six_at_once(r.lines.DeleteLine, L.DeleteLineRequest(line_id=line.id, idempotency_key=ikey()))
    assert {(w.refund_entry_id, w.credits_refunded) for w in got} == {(0, 0)}
    expect("NOT_FOUND", r.lines.GetLine, line_id=line.id)
    assert len(audit(p, shop.tenant, "line.delete", f"line:{line.id}")) == 1
    # With a refund of the whole charge: refunded once.
    line = create(r, shop.pkg).line
    got = six_at_once(shop.t.lines.DeleteLine, L.DeleteLineRequest(line_id=line.id, refund_credits=COST,
                                                                   idempotency_key=ikey()))
    assert len({(w.refund_entry_id, w.credits_refunded) for w in got}) == 1 and got[0].credits_refunded == COST
    assert p.balance(r) == 100 - COST
    assert len(audit(p, shop.tenant, "line.delete", f"line:{line.id}")) == 1
    assert p.books_balance(shop.tenant)


# Each refused class of text: whitespace only, a bidirectional override, a C1 control.
BAD_TEXT = {"blank": " \u3000 ", "bidi": "admin\u202enimda", "c1": "a\u0085b"}


def test_refused_text_in_every_free_text_field_writes_nothing(p, shop):
    r = p.reseller(shop.t, credits=100)
    line = create(r, shop.pkg).line
    before = state(p, shop.tenant)
    failures = []
    for cls, bad in BAD_TEXT.items():
        cases = [
            ("CreateLine", "notes", dict(package_id=shop.pkg.id, notes=bad, idempotency_key=ikey())),
            ("CreateLine", "allowed_user_agents",
             dict(package_id=shop.pkg.id, allowed_user_agents=["ok/1", bad], idempotency_key=ikey())),
            ("CreateTrialLine", "notes", dict(package_id=shop.trial.id, notes=bad, idempotency_key=ikey())),
            ("CreateTrialLine", "allowed_user_agents",
             dict(package_id=shop.trial.id, allowed_user_agents=[bad], idempotency_key=ikey())),
            ("UpdateLine", "notes", dict(line_id=line.id, notes=C.OptionalString(value=bad))),
            ("UpdateLine", "allowed_user_agents",
             dict(line_id=line.id, allowed_user_agents=C.StringList(values=[bad]))),
            ("SetLineStatus", "reason", dict(line_id=line.id, status=DISABLED, reason=bad)),
        ]
        for method, field, kw in cases:
            code, what = outcome(getattr(r.lines, method), **kw)
            if code != "INVALID_ARGUMENT" or field not in what:
                failures.append((cls, method, field, code, what))
    assert failures == []
    assert state(p, shop.tenant) == before
    assert get(r, line.id).status == ACTIVE and p.balance(r) == 100 - COST
    # What must still pass: text in other scripts, inner spaces.
    ok = t_ok = "Straße 5 – 東京 – مرحبا"
    assert r.lines.UpdateLine(line_id=line.id, notes=C.OptionalString(value=ok)).line.notes == t_ok
    r.lines.SetLineStatus(line_id=line.id, status=DISABLED, reason=ok)
    assert get(r, line.id).status == DISABLED


def test_zz_the_books_hold(p, shop):
    assert pending(p, shop.tenant) == 0
    for tenant in [int(x) for x in p.sql("SELECT id FROM frontdesk.tenants WHERE id > 0").split()]:
        assert p.books_balance(tenant), tenant
