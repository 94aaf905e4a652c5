"""routing_failover.py - bench/routing.sh's failover part: how long Route
keeps sending viewers to a node that died or went silent.

  routing_failover.py --routerd H:P --authd H:P --admin-pw PW --secret S
      --interval-ms 1000 --miss-after-ms 2000 [--kills 20] [--silences 20]
      [--probers 4]
  routing_failover.py node ROUTERD NODE_KEY INTERVAL_MS     (the node process)

The set-up: a tenant of its own (CreateTenant) without the shared pool
(SetSharedPoolAccess false), and three nodes of it: the victim in eu-west
(GB), two standbys in us-east (two failure domains). Route for a client in
GB names the victim while it is UP, a standby once it is not. The standbys
heartbeat from this process (unary Heartbeat, every interval / 3).

Each trial starts the victim's node process (this script's `node`
command: it holds StreamHeartbeats open with the victim's key and sends a
report at once and then every interval, printing `beat <seq> <monotonic>`
as it sends and `ack <seq> <monotonic> <health>` as each is answered), waits
until Route names the victim, then, right after the next heartbeat was
answered:
  - kill: SIGKILL of the node process (its stream breaks: routerd should
    know at once);
  - silence: SIGSTOP of it (the connection and the stream stay open, nothing
    more is sent: routerd can only notice after miss_after); SIGKILL after.
Meanwhile --probers threads call Route in a tight loop (one call each in
flight), and every answer is kept with the monotonic times it was sent and
received. The failover time is from the node's last heartbeat (the `beat`
time of the last report sent, CLOCK_MONOTONIC as this process's) to the
receipt of the first Route answer whose node and backups all avoid the
victim; for kills also from the kill. Then 300 ms more of answers must all
avoid it (else `flapped`). Kills and silences alternate. Prints one line
per trial, then
  failover_summary kill n= failed= median_ms= max_ms= kill_median_ms= kill_max_ms=
  failover_summary silence n= failed= median_ms= max_ms= stop_median_ms= stop_max_ms=
and the probers' Route rate and latency.
"""
import argparse
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402

R = fdapi.routing_pb2
C = fdapi.common_pb2
SVC = "/frontdesk.v1.RoutingService/"
STABLE_S = 0.3           # after the first answer avoiding it, this long of answers must too


def node_main(target, key, interval_ms):
    """The victim's node process: StreamHeartbeats at the interval."""
    try:    # killed with its parent, even while stopped (PR_SET_PDEATHSIG)
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass
    interval = int(interval_ms) / 1000
    ch = grpc.insecure_channel(target)
    call = ch.stream_stream(SVC + "StreamHeartbeats",
                            request_serializer=R.StreamHeartbeatsRequest.SerializeToString,
                            response_deserializer=R.StreamHeartbeatsResponse.FromString)
    load = R.NodeLoad(active_connections=10, egress_mbps=40.0, cpu_percent=10.0)

    def reports():
        seq = 0
        while True:
            seq += 1
            print(f"beat {seq} {time.monotonic():.6f}", flush=True)
            yield R.StreamHeartbeatsRequest(node_id=0, load=load, sequence=seq)
            time.sleep(interval)
    try:
        for r in call(reports(), metadata=fdapi.bearer(key)):
            print(f"ack {r.sequence} {time.monotonic():.6f} {r.directive.health}", flush=True)
        print("end ok", flush=True)
    except grpc.RpcError as e:
        print(f"end {e.code().name} {e.details()}", flush=True)


class Victim:
    """One run of the node process, and what it printed."""

    def __init__(self, target, key, interval_ms):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "node", target, key,
                                      str(interval_ms)], stdout=subprocess.PIPE, text=True, bufsize=1)
        self.beats, self.acks, self.end = [], [], None
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.proc.stdout:
            w = line.split()
            with self.cv:
                if w[0] == "beat":
                    self.beats.append((int(w[1]), float(w[2])))
                elif w[0] == "ack":
                    self.acks.append((int(w[1]), float(w[2]), int(w[3])))
                elif w[0] == "end":
                    self.end = " ".join(w[1:])
                self.cv.notify_all()
        with self.cv:
            self.end = self.end or "exited"
            self.cv.notify_all()

    def wait_ack(self, after, timeout):
        """Waits for an ack beyond the first `after` ones; returns it or None."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while len(self.acks) <= after and self.end is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return self.acks[after] if len(self.acks) > after else None

    def finish(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)


class Probers:
    """Threads calling Route in a tight loop, one call each in flight."""

    def __init__(self, target, token, request, n):
        self.ch = grpc.insecure_channel(target)
        self.call = self.ch.unary_unary(SVC + "Route", request_serializer=R.RouteRequest.SerializeToString,
                                        response_deserializer=R.RouteResponse.FromString)
        self.md = fdapi.bearer(token)
        self.request = request
        self.stop = threading.Event()
        self.records = None          # a list while a trial records answers
        self.last = (0.0, 0)         # (received, node id) of the latest answer
        self.count, self.errors, self.lat = 0, {}, []
        self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r = self.call(self.request, metadata=self.md, timeout=5)
                t1 = time.monotonic()
                rec = (t0, t1, r.node.node_id, tuple(b.node_id for b in r.backups))
            except grpc.RpcError as e:
                t1 = time.monotonic()
                rec = (t0, t1, -1, (e.code().name,))
                self.errors[e.code().name] = self.errors.get(e.code().name, 0) + 1
            self.count += 1
            if len(self.lat) < 200000:
                self.lat.append(t1 - t0)
            if rec[2] > 0 and t1 > self.last[0]:
                self.last = (t1, rec[2])
            recs = self.records
            if recs is not None:
                recs.append(rec)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.t1 = time.monotonic()
        self.ch.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        return node_main(*sys.argv[2:5])
    ap = argparse.ArgumentParser()
    ap.add_argument("--routerd", required=True)
    ap.add_argument("--authd", required=True)
    ap.add_argument("--admin-pw", required=True)
    ap.add_argument("--secret", required=True, help="linesd's service secret")
    ap.add_argument("--interval-ms", type=int, required=True)
    ap.add_argument("--miss-after-ms", type=int, required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--silences", type=int, default=20)
    ap.add_argument("--probers", type=int, default=4)
    a = ap.parse_args()
    sys.setswitchinterval(0.0005)    # answers and node lines are timed by threads sharing the GIL
    interval, miss = a.interval_ms / 1000, a.miss_after_ms / 1000

    # --- the tenant, its three nodes, the standbys' heartbeats, the token ---
    auth = fdapi.Auth(grpc.insecure_channel(a.authd), timeout=30)
    pa = auth.Login(tenant_slug="platform", username="admin", password=a.admin_pw).access_token
    slug = "bench-failover-" + uuid.uuid4().hex[:6]
    tenant = auth.with_token(pa).CreateTenant(slug=slug, name="Bench failover", admin_username="boss",
                                              admin_password="bench-boss-password-2").tenant.id
    boss = auth.Login(tenant_slug=slug, username="boss", password="bench-boss-password-2").access_token
    ch = grpc.insecure_channel(a.routerd)

    def rpc(name, req_cls, resp_cls):
        return ch.unary_unary(SVC + name, request_serializer=req_cls.SerializeToString,
                              response_deserializer=resp_cls.FromString)
    register = rpc("RegisterNode", R.RegisterNodeRequest, R.RegisterNodeResponse)
    heartbeat = rpc("Heartbeat", R.HeartbeatRequest, R.HeartbeatResponse)
    pool = rpc("SetSharedPoolAccess", R.SetSharedPoolAccessRequest, R.SetSharedPoolAccessResponse)
    pool(R.SetSharedPoolAccessRequest(tenant_id=tenant, allowed=False), metadata=fdapi.bearer(pa), timeout=30)
    nodes = {}
    for name, region, country, fd in (("victim", "eu-west", "GB", "fo-a"), ("standby-1", "us-east", "US", "fo-b"),
                                      ("standby-2", "us-east", "US", "fo-c")):
        r = register(R.RegisterNodeRequest(
            tenant_id=tenant, name=f"fo-{name}", region=region, country=country, failure_domain=fd,
            urls=[R.NodeUrl(format=C.OUTPUT_FORMAT_TS, base_url=f"http://{name}.fo.bench.example:8080")],
            max_connections=100000, max_egress_mbps=100000, idempotency_key="fo-" + uuid.uuid4().hex),
            metadata=fdapi.bearer(boss), timeout=30)
        nodes[name] = (r.node.id, r.node_key)
    victim, victim_key = nodes["victim"]
    standby_ids = {nodes["standby-1"][0], nodes["standby-2"][0]}
    done = threading.Event()
    standby_err = []

    def standbys():
        load = R.NodeLoad(active_connections=10, egress_mbps=40.0, cpu_percent=10.0)
        while not done.is_set():
            for n in ("standby-1", "standby-2"):
                try:
                    heartbeat(R.HeartbeatRequest(node_id=0, load=load), metadata=fdapi.bearer(nodes[n][1]),
                              timeout=5)
                except grpc.RpcError as e:
                    standby_err.append(f"{n}: {e.code().name}: {e.details()}")
            done.wait(interval / 3)
    st = threading.Thread(target=standbys, daemon=True)
    st.start()
    tok = auth.IssueServiceToken(service_name="linesd", secret=a.secret, audience="routerd").token
    req = R.RouteRequest(tenant_id=tenant, client_country="GB", client_ip="203.0.113.50", stream_id=7,
                         bitrate_kbps=4000, output_format=C.OUTPUT_FORMAT_TS)
    time.sleep(0.3)
    route = rpc("Route", R.RouteRequest, R.RouteResponse)
    r = route(req, metadata=fdapi.bearer(tok), timeout=30)   # the token verified before the probers start
    if r.node.node_id not in standby_ids:
        sys.exit(f"routing_failover: with the victim DOWN, Route named {r.node.node_id}, not a standby")
    print(f"# failover tenant {tenant} (no shared pool): victim node {victim} eu-west/fo-a, standbys "
          f"{sorted(standby_ids)} us-east/fo-b,fo-c; Route for a client in GB; interval {a.interval_ms} ms, "
          f"miss_after {a.miss_after_ms} ms")
    pr = Probers(a.routerd, tok, req, a.probers)

    results = {"kill": [], "silence": []}
    failed = {"kill": [], "silence": []}
    plan = []
    for i in range(max(a.kills, a.silences)):
        if i < a.kills:
            plan.append("kill")
        if i < a.silences:
            plan.append("silence")
    for trial, kind in enumerate(plan, 1):
        v = Victim(a.routerd, victim_key, a.interval_ms)
        try:
            res = one_trial(kind, v, pr, victim, interval, miss)
        finally:
            v.finish()
        n = len(results[kind]) + len(failed[kind]) + 1
        if isinstance(res, str):
            failed[kind].append(res)
            print(f"failover {kind} {n}: FAILED: {res}", flush=True)
        else:
            results[kind].append(res)
            extra = f"from the {'kill' if kind == 'kill' else 'stop'} {res['from_signal'] * 1000:.1f} ms"
            print(f"failover {kind} {n}: last heartbeat -> first Route avoiding it {res['from_beat'] * 1000:.1f} ms"
                  f" ({extra}; the first such answer was sent {res['sent_after_beat'] * 1000:.1f} ms after the "
                  f"last heartbeat; {res['answers']} answers in between, {res['toward']} of them to the victim"
                  f"{'; ' + res['note'] if res['note'] else ''})", flush=True)
    pr.close()
    done.set()
    st.join(5)
    for kind in ("kill", "silence"):
        xs = [r["from_beat"] * 1000 for r in results[kind]]
        ks = [r["from_signal"] * 1000 for r in results[kind]]
        if not xs and not failed[kind]:
            continue
        sig = "kill" if kind == "kill" else "stop"
        f = lambda v: f"{v:.1f}"
        print(f"failover_summary {kind} n={len(xs)} failed={len(failed[kind])} "
              f"median_ms={f(statistics.median(xs)) if xs else 'nan'} max_ms={f(max(xs)) if xs else 'nan'} "
              f"min_ms={f(min(xs)) if xs else 'nan'} "
              f"{sig}_median_ms={f(statistics.median(ks)) if ks else 'nan'} {sig}_max_ms={f(max(ks)) if ks else 'nan'} "
              f"interval_ms={a.interval_ms} miss_after_ms={a.miss_after_ms}")
    lat = sorted(pr.lat)
    secs = pr.t1 - pr.t0
    print(f"failover_probers threads={a.probers} route_rate={pr.count / secs:.0f}/s "
          f"p50_ms={lat[len(lat) // 2] * 1000 if lat else 0:.3f} p99_ms={lat[int(len(lat) * 0.99)] * 1000 if lat else 0:.3f} "
          f"errors={sum(pr.errors.values())} {pr.errors if pr.errors else ''}")
    if standby_err:
        print(f"failover standbys VIOLATIONS: {len(standby_err)} heartbeats failed, first: {standby_err[0]}")
    bad = [x for k in failed.values() for x in k]
    print(f"audit failover-trials {'ok' if not bad and not standby_err else 'VIOLATIONS: ' + str(len(bad)) + ' failed'}"
          f" ({sum(len(x) for x in results.values())} trials measured)")


def one_trial(kind, v, pr, victim, interval, miss):
    """One kill or silence; a dict of times (seconds), or why it failed."""
    # Up: an answered heartbeat, then Route naming the victim after it.
    first = v.wait_ack(0, 10)
    if first is None:
        return f"the node process got no answer to its first heartbeat ({v.end})"
    deadline = time.monotonic() + 10
    while not (pr.last[0] > first[1] and pr.last[1] == victim):
        if time.monotonic() > deadline:
            return f"Route never named the victim after its first heartbeat (last answer: node {pr.last[1]})"
        time.sleep(0.005)
    # Right after the next heartbeat is answered: kill or stop it.
    nack = len(v.acks)
    ack = v.wait_ack(nack, interval * 3 + 2)
    if ack is None:
        return f"no answer to heartbeat {nack + 1} ({v.end})"
    records = []
    pr.records = records
    t_sig = time.monotonic()
    os.kill(v.proc.pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
    time.sleep(0.05)
    with v.cv:
        sent = [t for _, t in v.beats if t <= t_sig]
        if any(t > t_sig for _, t in v.beats):
            return "a heartbeat timed after the signal"
    t_beat = max(sent)
    # The first answer received after the signal whose node and backups avoid
    # the victim; then STABLE_S more of answers, all avoiding it.
    limit = t_sig + (miss if kind == "silence" else 0) + 5
    first_avoid = None
    while True:
        now = time.monotonic()
        if first_avoid is None:
            for rec in list(records):
                if rec[1] > t_sig and rec[2] > 0 and rec[2] != victim and victim not in rec[3]:
                    if first_avoid is None or rec[1] < first_avoid[1]:
                        first_avoid = rec
        if first_avoid is not None and now > first_avoid[1] + STABLE_S:
            break
        if now > limit:
            pr.records = None
            if first_avoid is None:
                return f"Route still named the victim {limit - t_sig:.1f} s after the {kind}"
            break
        time.sleep(0.002)
    pr.records = None
    after = [r for r in records if r[1] > t_sig]
    toward = [r for r in after if r[1] < first_avoid[1] and (r[2] == victim or victim in r[3])]
    flaps = [r for r in after if r[0] > first_avoid[1] and (r[2] == victim or victim in r[3])]
    errs = [r for r in after if r[2] < 0]
    notes = []
    if flaps:
        notes.append(f"FLAPPED: {len(flaps)} later answers named the victim again")
    if errs:
        notes.append(f"{len(errs)} errors ({errs[0][3][0]})")
    if kind == "silence" and first_avoid[0] - t_beat < miss - 0.05:
        notes.append(f"before miss_after: the victim avoided {(first_avoid[0] - t_beat) * 1000:.0f} ms after its "
                     f"last heartbeat")
    res = {"from_beat": first_avoid[1] - t_beat, "from_signal": first_avoid[1] - t_sig,
           "sent_after_beat": first_avoid[0] - t_beat,
           "answers": len([r for r in after if r[1] < first_avoid[1]]), "toward": len(toward),
           "note": "; ".join(notes)}
    if flaps:
        return f"flapped: {res}"
    return res


if __name__ == "__main__":
    main()
