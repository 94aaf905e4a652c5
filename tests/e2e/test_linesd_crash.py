"""A linesd replica SIGKILLed during a burst of authorizations (issue 14):
two replicas on one database, lines whose rules both hold in memory (so the
burst runs frontdesk.open_session), replica A killed mid-burst and started
again on the same port while the burst goes on at both.

What must hold afterwards:
- no line has more live sessions than its limit (the limit lives in
  PostgreSQL, under the line's advisory lock: a replica's death cannot
  breach it, and the restarted replica, its memory empty, keeps it);
- every session answered allowed is in frontdesk.sessions, with its line,
  and live unless a test call ended it (EndSession answered OK) or, in the
  END_OLDEST tenant, a later authorization replaced it; the restarted
  replica and the other one answer every live session's heartbeat active;
- the sessions that can exist without an allowed answer are exactly those of
  calls that got no answer (the replica died between the commit and the
  reply): each live row is an answered session or has the client identity
  (line, address, user agent) of a call that failed. Such a session holds a
  slot nobody plays in until the session timeout ends it (no heartbeat
  comes); this test counts and prints them.

Sessions are written with synchronous_commit = off, which matters only
when PostgreSQL itself crashes (sessions committed in the last moments can
be forgotten, and are re-opened by their players' next authorization); a
linesd crash loses nothing that was answered, since every answer follows
the commit of its own transaction.

Processes: one Stack (authd, billingd, two linesd) for the file; the burst
uses channels of its own with a short reconnect backoff, so calls reach the
restarted replica as soon as it serves."""
import collections
import os
import random
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import fdapi  # noqa: E402
import fdstack  # noqa: E402
from fdapi import outcome  # noqa: E402
from fdstack import L, ikey  # noqa: E402
from test_line_cache import OPEN, Psql, make_shop, probe, write_report  # noqa: E402

ENV = {
    "FRONTDESK_LINESD_SWEEP_MS": "500",
    "FRONTDESK_SESSION_TIMEOUT": "120",
    "FRONTDESK_HEARTBEAT_FLUSH_MS": "200",
}
LINES = 24
EO_LINES = 8             # of them, in a tenant whose policy is END_OLDEST
CLIENTS = 4              # client identities per line competing for its 2 slots
WORKERS = 12
BEFORE_KILL = 0.8        # s of burst before the kill
DOWN = 0.4               # s the replica stays dead before it is started again
AFTER = 0.8              # s of burst once it serves again
END_SHARE = 0.2          # of allowed answers, ended again by the worker (churn)
D = L.DenialReason
E = L.SessionEndReason
BACKOFF = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
           ("grpc.max_reconnect_backoff_ms", 300)]


REPORT = []


def say(msg):
    REPORT.append(msg)
    print(msg)


@pytest.fixture(scope="module")
def p(request):
    s = fdstack.Stack(linesd_replicas=2, linesd_env=ENV)
    s.q = Psql(s.db.name)
    s.g = Psql(s.db.name)
    yield s
    s.q.close()
    s.g.close()
    # The restarted replica and the other one stop cleanly (the killed one's
    # status, -9, is on the same port: close() would report that one).
    codes = [x.stop() for x in s.linesd]
    s.close()
    write_report(request, [""] + REPORT)
    assert codes == [0, 0], codes


def authorize(edge, s, line, client, **kw):
    addr, ua = client
    return edge.AuthorizePlayback(tenant_id=s.tenant, username=line.username, password=line.password,
                                  stream_id=s.cat.streams[0], client_ip=addr, user_agent=ua, **kw)


def test_sigkill_during_a_burst(p):
    """Lines of max 2 in two tenants: REFUSE_NEW (LINES - EO_LINES lines) and
    END_OLDEST (EO_LINES), CLIENTS client identities per line."""
    refuse = make_shop(p)
    oldest = make_shop(p, policy=L.CONNECTION_LIMIT_POLICY_END_OLDEST)
    shop_of = {}
    lines = []
    for n in range(LINES):
        s = oldest if n < EO_LINES else refuse
        ln = s.r.lines.CreateLine(reseller_id=s.r.id, package_id=s.cat.package.id, idempotency_key=ikey()).line
        shop_of[ln.id] = s
        lines.append(ln)
    eo = {ln.id for ln in lines if shop_of[ln.id] is oldest}
    clients = {ln.id: [(f"10.{n}.{k}.1", f"Player/{k}") for k in range(CLIENTS)] for n, ln in enumerate(lines, start=1)}
    token = p.service_token("edged", "linesd")
    chans = [grpc.insecure_channel(x.target, options=BACKOFF) for x in p.linesd]
    edges = [fdapi.Lines(ch, token, timeout=3.0) for ch in chans]

    def end(e, sid, ln):
        return e.EndSession(tenant_id=shop_of[ln.id].tenant, session_id=sid)

    # Warm: both replicas hold every line (an allowed full-path answer each),
    # and answer from memory (one line of each tenant proved behind the gate
    # at each replica).
    for ln in lines:
        for i, e in enumerate(edges):
            a = authorize(e, shop_of[ln.id], ln, (f"192.0.2.{i + 1}", "warm"))
            assert a.allowed, a
            end(e, a.session_id, ln)
    for ln in (lines[0], lines[-1]):
        for i, e in enumerate(edges):
            paths = []
            while OPEN not in paths and len(paths) < 3:
                path, (code, a) = probe(p, lambda e=e: authorize(e, shop_of[ln.id], ln, ("192.0.2.9", "probe")))
                assert code == "OK" and a.allowed, (i, code, a)
                end(e, a.session_id, ln)
                paths.append(path)
            assert paths[-1] == OPEN, (i, paths)
    tenants = f"({refuse.tenant}, {oldest.tenant})"
    warm_ids = set(p.q.q(f"SELECT id FROM frontdesk.sessions WHERE tenant_id IN {tenants}").split())

    calls, ends = [], []        # (replica, line id, client, t0, t1, code, answer); (replica, sid, t0, t1, code)
    lock = threading.Lock()
    stop = threading.Event()

    def worker(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            ln = rnd.choice(lines)
            client = rnd.choice(clients[ln.id])
            r = rnd.randrange(2)
            t0 = time.monotonic()
            code, a = outcome(lambda: authorize(edges[r], shop_of[ln.id], ln, client))
            t1 = time.monotonic()
            with lock:
                calls.append((r, ln.id, client, t0, t1, code, a))
            if code != "OK":
                time.sleep(0.02)     # replica A down: do not spin
            elif a.allowed and rnd.random() < END_SHARE:
                r2 = rnd.randrange(2)
                t0 = time.monotonic()
                code, _ = outcome(lambda: end(edges[r2], a.session_id, ln))
                with lock:
                    ends.append((r2, a.session_id, t0, time.monotonic(), code))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    start = time.monotonic()
    for th in threads:
        th.start()
    try:
        time.sleep(BEFORE_KILL)
        killed_at = time.monotonic()
        p.linesd[0].proc.kill()
        assert p.linesd[0].proc.wait(5) == -9
        time.sleep(DOWN)
        p.replace_linesd(0)
        back_at = time.monotonic()
        time.sleep(AFTER)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    burst = time.monotonic() - start
    assert not any(th.is_alive() for th in threads)

    by_code = collections.Counter((r, code) for r, _, _, _, _, code, _ in calls)
    allowed = [c for c in calls if c[5] == "OK" and c[6].allowed]
    failed = [c for c in calls if c[5] != "OK"]
    in_flight = [c for c in calls if c[0] == 0 and c[3] < killed_at < c[4]]
    say(f"burst {burst:.2f} s: {len(calls)} authorizations ({len(allowed)} allowed), {len(ends)} ends;"
        f" replica A killed at {killed_at - start:.2f} s with {len(in_flight)} of its calls in flight,"
        f" serving again at {back_at - start:.2f} s; codes by replica: {dict(by_code)}")
    # The kill landed mid-burst: replica A answered before it and after its
    # restart, and calls were cut by it.
    assert any(c[0] == 0 and c[5] == "OK" and c[4] < killed_at for c in calls), "replica A answered nothing before"
    assert any(c[0] == 0 and c[5] == "OK" and c[3] > back_at for c in calls), "replica A answered nothing after"
    assert in_flight and any(c[5] != "OK" for c in in_flight), "no call of replica A was cut by the kill"
    # The other replica kept answering.
    assert all(c[5] == "OK" for c in calls if c[0] == 1), [c[5:] for c in calls if c[0] == 1 and c[5] != "OK"][:5]
    denials = collections.Counter(D.Name(c[6].denial_reason) for c in calls if c[5] == "OK" and not c[6].allowed)
    assert set(denials) <= {"DENIAL_REASON_MAX_CONNECTIONS"}, denials
    assert not any(c[1] in eo for c in calls if c[5] == "OK" and not c[6].allowed), "END_OLDEST refused"
    assert sum(denials.values()) > 0 and any(c[6].session_reused for c in allowed), "the lines were never full"
    assert any(c[6].replaced_session_id for c in allowed if c[1] in eo), "END_OLDEST never replaced"

    # The sessions as PostgreSQL has them.
    rows = {}
    for line in p.q.q(f"SELECT id, line_id, host(client_ip), user_agent, ended_at IS NULL, end_reason"
                      f" FROM frontdesk.sessions WHERE tenant_id IN {tenants}").split("\n"):
        sid, lid, addr, ua, is_live, reason = line.split("|")
        if sid not in warm_ids:
            rows[int(sid)] = (int(lid), (addr, ua), is_live == "t", int(reason))
    # No line over its limit.
    per_line = collections.Counter(v[0] for v in rows.values() if v[2])
    assert max(per_line.values()) <= 2, {k: v for k, v in per_line.items() if v > 2}
    # Every allowed answer's session is there, with its line, live unless
    # ended (by a test call, or REPLACED under END_OLDEST).
    ended_ok = {sid for _, sid, _, _, code in ends if code == "OK"}
    ended_doubt = {sid for _, sid, _, _, code in ends if code != "OK"}
    for r, lid, client, t0, t1, code, a in allowed:
        assert a.session_id in rows, \
            f"session {a.session_id} answered allowed by replica {r} is not in frontdesk.sessions"
        row = rows[a.session_id]
        assert row[:2] == (lid, client), (a.session_id, row, lid, client)
        if a.session_id in ended_ok:
            assert not row[2], f"session {a.session_id} ended (EndSession OK) is still live"
        elif lid in eo and row[3] == E.SESSION_END_REASON_REPLACED:
            pass
        elif a.session_id not in ended_doubt:
            assert row[2], f"session {a.session_id} answered allowed by replica {r} is not live ({row})"
    # A row nobody was answered about belongs to a call that got no answer.
    answered = {c[6].session_id for c in allowed}
    doubt_clients = {(c[1], c[2]) for c in failed}
    orphans = [sid for sid in rows if sid not in answered]
    for sid in orphans:
        lid, client, _, _ = rows[sid]
        assert (lid, client) in doubt_clients, \
            f"session {sid} of line {lid} ({client}) exists, but no call for that client failed or was allowed it"
    say(f"sessions: {len(rows)} opened, {sum(per_line.values())} live on {len(per_line)} lines (max 2 each),"
        f" {sum(1 for v in rows.values() if v[3] == E.SESSION_END_REASON_REPLACED)} replaced;"
        f" {len(orphans)} opened by calls that got no answer ({sum(rows[x][2] for x in orphans)} still live);"
        f" {len(failed)} calls failed, {len(ended_doubt)} ends in doubt")

    # After the restart, at both replicas: every live session is known, a
    # full REFUSE_NEW line refuses a newcomer, and the restarted one answers
    # from memory again.
    live_rows = {sid: v for sid, v in rows.items() if v[2]}
    for i, e in enumerate(edges):
        for sid, v in live_rows.items():
            h = e.SessionHeartbeat(tenant_id=(oldest if v[0] in eo else refuse).tenant, session_id=sid)
            assert h.active, f"replica {i}: session {sid} not active after the restart"
        for ln in lines:
            if per_line[ln.id] == 2 and ln.id not in eo:
                a = authorize(e, refuse, ln, (f"198.51.100.{i + 1}", "newcomer"))
                assert not a.allowed and a.denial_reason == D.DENIAL_REASON_MAX_CONNECTIONS, (i, ln.id, a)
    free = next((ln for ln in lines if per_line[ln.id] < 2 and ln.id not in eo), lines[-1])
    if per_line[free.id] == 2:
        end(edges[1], next(x for x, v in live_rows.items() if v[0] == free.id), free)
    for attempt in range(3):
        path, (code, a) = probe(p, lambda: authorize(edges[0], refuse, free, ("192.0.2.10", "after")))
        assert code == "OK" and a.allowed, (code, a)
        end(edges[0], a.session_id, free)
        if path == OPEN:
            break
    assert path == OPEN, "the restarted replica never answered from memory"
    for ch in chans:
        ch.close()
