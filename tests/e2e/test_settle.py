"""linesd settles charges with no database transaction open during the call
to billingd (issue 12, item 3; services/linesd/lines.c, "settling a charge").

billingd is stopped (SIGSTOP) for 10 s while 50 CreateLine calls arrive, on a
linesd with a pool of 3 database connections: reads (GetLine, ListLines) and
AuthorizePlayback must keep answering within their usual time meanwhile
(each at most 10x its median before the stop, or 1 s), since the creates wait
for billingd without holding a connection or a row lock. After SIGCONT every
line is settled exactly once (one charge entry each, the books balanced, no
pending row left once the reconciliation pass has run), and each create sent
again with its key answers that line and that charge.

On the code that called Charge inside the settling transaction, the 50
creates held the 3 connections for their whole deadline and the reads waited
for one (up to the pool's acquire timeout): the bound fails.

Processes: one Stack for the file (authd, billingd, one linesd with 64
worker threads so that the waiting creates do not hold every thread: that is
a limit of its own, not the one this test is about)."""
import os
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdapi  # noqa: E402
import fdstack  # noqa: E402
from fdapi import outcome  # noqa: E402
from fdstack import ikey, uniq  # noqa: E402

L = fdapi.lines_pb2

COST = 10
CREATES = 50
STOP_S = 10
POOL = "3"


@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_env={
        "FRONTDESK_LINESD_DB_POOL": POOL,
        "FRONTDESK_LINESD_THREADS": "64",
        "FRONTDESK_LINESD_RECONCILE_AFTER": "2",
        "FRONTDESK_LINESD_SWEEP_MS": "300",
    })
    yield s
    if s.billingd.proc.poll() is None:
        os.kill(s.billingd.proc.pid, signal.SIGCONT)
    s.close()


def timed(fn, **kw):
    t0 = time.monotonic()
    code, what = outcome(fn, timeout=5, **kw)
    return time.monotonic() - t0, code, what


def test_billingd_stopped_while_50_creates_arrive(p):
    t = p.tenant()
    cat = p.catalog(t, cost=COST, max_connections=100, days=30)
    r = p.reseller(t, credits=COST * (CREATES + 1))
    known = r.lines.CreateLine(package_id=cat.package.id, idempotency_key=ikey()).line
    edge = p.edge()
    probes = {
        "GetLine": lambda **kw: r.lines.GetLine(line_id=known.id, **kw),
        "ListLines": lambda **kw: r.lines.ListLines(page_size=20, **kw),
        "AuthorizePlayback": lambda **kw: edge.AuthorizePlayback(
            tenant_id=t.tenant, username=known.username, password=known.password, stream_id=0,
            client_ip="198.51.100.7", user_agent="probe/1", **kw),
    }

    # Before: the usual time of each.
    before = {name: [] for name in probes}
    for _ in range(15):
        for name, fn in probes.items():
            dt, code, what = timed(fn)
            assert code == "OK", (name, code, what)
            if name == "AuthorizePlayback":
                assert what.allowed, what
            before[name].append(dt)
    bound = {name: max(1.0, 10 * statistics.median(v)) for name, v in before.items()}

    reqs = [L.CreateLineRequest(package_id=cat.package.id, username=uniq("stop"), idempotency_key=ikey())
            for _ in range(CREATES)]
    os.kill(p.billingd.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        barrier = threading.Barrier(CREATES)

        def create(req):
            barrier.wait()
            return outcome(r.lines.CreateLine, req, timeout=8)

        with ThreadPoolExecutor(CREATES) as ex:
            futures = [ex.submit(create, req) for req in reqs]
            # The creates' own database work (each commits its pending charge
            # first) queues for the 3 connections like any call: measure once
            # it is done, while the creates wait for billingd.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and p.sql(
                    f"SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = {t.tenant}"
                    f" AND state = 'pending'") != str(CREATES):
                time.sleep(0.05)
            prepared_after = time.monotonic() - stopped_at
            during = {name: [] for name in probes}
            while time.monotonic() - stopped_at < STOP_S:
                for name, fn in probes.items():
                    dt, code, what = timed(fn)
                    during[name].append((dt, code))
                time.sleep(0.05)
            created = [f.result() for f in futures]
    finally:
        os.kill(p.billingd.proc.pid, signal.SIGCONT)

    print(f"creates prepared {prepared_after:.2f} s after the stop;", ", ".join(
        f"{name}: median {statistics.median(before[name]) * 1000:.1f} ms before,"
        f" max {max(dt for dt, _ in during[name]) * 1000:.1f} ms during ({len(during[name])} calls)"
        for name in probes))
    for name, v in during.items():
        assert len(v) >= 10, (name, len(v))
        bad = [(round(dt, 3), code) for dt, code in v if code != "OK" or dt > bound[name]]
        assert not bad, (f"{name} during the stop: {len(bad)} of {len(v)} calls failed or took more than"
                         f" {bound[name]:.3f} s (before: median {statistics.median(before[name]):.4f} s)", bad)
    codes = [c for c, _ in created]
    assert set(codes) <= {"OK", "DEADLINE_EXCEEDED", "UNAVAILABLE"}, codes
    assert codes.count("OK") < CREATES, "billingd was stopped: the creates should have waited for it"

    # After SIGCONT: the reconciliation pass settles what the deadlines left pending.
    tenant = t.tenant
    deadline = time.time() + 90
    while time.time() < deadline:
        if p.sql(f"SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = {tenant}"
                 f" AND state = 'pending'") == "0":
            break
        time.sleep(0.2)
    assert p.sql(f"SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = {tenant}"
                 f" AND state = 'pending'") == "0", "pending charges left after the reconciliation pass"
    names = ",".join(f"'{q.username}'" for q in reqs)
    rows = p.rows(f"SELECT l.username, l.state, (SELECT count(*) FROM frontdesk.ledger_entries e"
                  f"  WHERE e.tenant_id = l.tenant_id AND e.kind = 'charge' AND e.line_id = l.id)"
                  f" FROM frontdesk.lines l WHERE l.tenant_id = {tenant} AND l.username IN ({names})")
    assert len(rows) == CREATES, rows
    assert all(st == "active" and n == "1" for _, st, n in rows), rows
    assert p.sql(f"SELECT count(*) FROM frontdesk.ledger_entries WHERE tenant_id = {tenant}"
                 f" AND kind = 'charge' AND from_account = {r.id}") == str(CREATES + 1)
    assert p.balance(r) == 0
    assert p.books_balance(tenant)
    # Each line's create audited once, whoever applied it.
    assert p.sql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tenant}"
                 f" AND action = 'line.create'") == str(CREATES + 1)

    # The same requests again answer their line and its one charge.
    for req in reqs:
        again = r.lines.CreateLine(req)
        assert again.line.username == req.username and again.line.status == L.LINE_STATUS_ACTIVE
        assert again.charge_entry_id == int(p.sql(
            f"SELECT id FROM frontdesk.ledger_entries WHERE tenant_id = {tenant} AND kind = 'charge'"
            f" AND line_id = {again.line.id}"))
    assert p.balance(r) == 0
    assert p.books_balance(tenant)
