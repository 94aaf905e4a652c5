"""kickoff_setup.py - the gRPC side of bench/kickoff.sh's set-up (its SQL
side, the bulk lines, is in kickoff.sh). Each command prints shell
assignments or writes files:

  wait TARGET                        until TARGET answers Health/Check SERVING
  tenants AUTHD LINESD ADMIN_PW DIR N1,N2,...
                                     one tenant per count (CreateTenant by the
                                     platform admin), each with a reseller, a
                                     catalog (5 live streams, a bouquet of
                                     them, a package of it: 365 days, 2
                                     connections, cost 0) and its first line
                                     through CreateLine (username U0, the
                                     tenant's; the others are its copies, made
                                     in SQL); writes DIR/tenants.txt, one
                                     tenant a line: `tenant template_line u0
                                     lines password streams` (streams comma
                                     separated)
  nodes AUTHD ROUTERD ADMIN_PW DIR VIEWERS
                                     the fleet (FLEET below, capacities scaled
                                     by VIEWERS / 50,000): 200 shared-pool nodes
                                     (RegisterNode by the platform admin) in 4
                                     regions, a few of them big; no heartbeat
                                     (the driver's streams bring them up).
                                     Writes DIR/nodes.txt, one node a line:
                                     `id region max_connections high_water key`,
                                     and DIR/admin.token (the platform admin's
                                     access token, for WatchNodes)
  token AUTHD SECRET LINESD TENANT DIR
                                     the edge's service token for linesd
                                     (IssueServiceToken edged, audience
                                     linesd), shown to linesd once (a
                                     heartbeat of session 0 answers
                                     INVALID_ARGUMENT after the token is
                                     verified, so the verifier has authd's keys
                                     before the load): DIR/edge.token
"""
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402

L = fdapi.lines_pb2
R = fdapi.routing_pb2
C = fdapi.common_pb2

# The fleet for 50,000 viewers whose countries are GB 40%, US 30%, DE 20%,
# IN 10% (bench/kickoff.c): per region, (country, [(nodes, max_connections)]).
# Each region ends the join near half full (Route fills nodes by headroom, so
# each node's share follows its capacity); eu-west's big node then carries
# about 7,900 viewers, and the other 49 there can take them all below high
# water (90%) only if they are spread by headroom: moved all to one node,
# they would overload it many times over.
FLEET = [
    ("eu-west", "GB", [(1, 16000), (49, 500)]),
    ("us-east", "US", [(2, 6000), (48, 400)]),
    ("eu-central", "DE", [(50, 400)]),
    ("ap-south", "IN", [(50, 200)]),
]
DOMAINS = 4
BITRATE_MBPS = 4                   # bench/kickoff.c's --bitrate-kbps 4000
STREAMS = 5


def ikey():
    return "kickoff-" + uuid.uuid4().hex


def wait(target, seconds=30):
    ch = grpc.insecure_channel(target)
    deadline = time.time() + seconds
    while True:
        try:
            if ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1) == b"\x08\x01":
                return ch
        except grpc.RpcError:
            pass
        if time.time() > deadline:
            sys.exit(f"kickoff_setup: {target} never became SERVING")
        time.sleep(0.1)


def parallel(n, fn, window=16):
    out, errs, lock, nxt = [None] * n, [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n or errs:
                return
            try:
                out[i] = fn(i)
            except Exception as e:  # noqa: BLE001
                errs.append(f"{i}: {e!r}")
    ts = [threading.Thread(target=worker) for _ in range(window)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        sys.exit(f"kickoff_setup: {errs[0]}")
    return out


def platform_admin(authd, admin_pw):
    auth = fdapi.Auth(wait(authd), timeout=30)
    return auth, auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token


def main(cmd, *args):
    if cmd == "wait":
        wait(args[0])
    elif cmd == "tenants":
        authd, linesd, admin_pw, d, counts = args
        counts = [int(x) for x in counts.split(",")]
        auth, pa = platform_admin(authd, admin_pw)
        lch = wait(linesd)
        rows = []
        for k, n in enumerate(counts):
            slug, boss_pw = f"kickoff-{k + 1}", f"kickoff-boss-password-{k + 1}"
            tenant = auth.with_token(pa).CreateTenant(slug=slug, name=f"Kickoff {k + 1}", admin_username="boss",
                                                      admin_password=boss_pw).tenant.id
            boss = auth.Login(tenant_slug=slug, username="boss", password=boss_pw).access_token
            res = auth.with_token(boss).CreateReseller(username="kickoff-reseller", password="kickoff-reseller-pw-1",
                                                       display_name="Kickoff reseller").reseller
            lines = fdapi.Lines(lch, boss, timeout=30)
            streams = [lines.CreateStream(name=f"Match {i}", kind=L.STREAM_KIND_LIVE, category="Sports",
                                          idempotency_key=ikey()).stream.id for i in range(STREAMS)]
            bq = lines.CreateBouquet(name="Kickoff", stream_ids=streams, idempotency_key=ikey()).bouquet
            pkg = lines.CreatePackage(name="Kickoff", duration_days=365, credit_cost=0, max_connections=2,
                                      bouquet_ids=[bq.id], idempotency_key=ikey()).package
            u0, password = (k + 1) * 10_000_000, f"kickoff-line-pw-{k + 1}"
            line = lines.CreateLine(reseller_id=res.id, username=str(u0), password=password, package_id=pkg.id,
                                    idempotency_key=ikey()).line
            assert line.status == L.LINE_STATUS_ACTIVE, line
            rows.append(f"{tenant} {line.id} {u0} {n} {password} {','.join(map(str, streams))}\n")
        with open(os.path.join(d, "tenants.txt"), "w") as f:
            f.writelines(rows)
    elif cmd == "nodes":
        authd, routerd, admin_pw, d, viewers = args
        scale = int(viewers) / 50000
        _, pa = platform_admin(authd, admin_pw)
        admin = fdapi.Routing(wait(routerd), pa, timeout=30)
        reqs = []
        for region, country, groups in FLEET:
            j = 0
            for count, cap in groups:
                for _ in range(count):
                    c = max(10, int(cap * scale))
                    host = f"{region}-{j}.kickoff.example"
                    reqs.append(R.RegisterNodeRequest(
                        tenant_id=0, name=f"kickoff-{region}-{j:02d}",
                        urls=[R.NodeUrl(format=C.OUTPUT_FORMAT_TS, base_url=f"http://{host}:8080"),
                              R.NodeUrl(format=C.OUTPUT_FORMAT_M3U8, base_url=f"https://{host}")],
                        region=region, country=country, failure_domain=f"{region}-fd{j % DOMAINS}",
                        max_connections=c, max_egress_mbps=c * BITRATE_MBPS * 2, weight=100, tags=["kickoff"],
                        idempotency_key=ikey()))
                    j += 1
        regs = parallel(len(reqs), lambda i: admin.RegisterNode(reqs[i]))
        with open(os.path.join(d, "nodes.txt"), "w") as f:
            for r in regs:
                assert r.node_key, r
                f.write(f"{r.node.id} {r.node.region} {r.node.max_connections} {r.node.high_water_percent or 90} "
                        f"{r.node_key}\n")
        with open(os.path.join(d, "admin.token"), "w") as f:
            f.write(pa + "\n")
    elif cmd == "token":
        authd, secret, linesd, tenant, d = args
        auth = fdapi.Auth(grpc.insecure_channel(authd), timeout=30)
        tok = auth.IssueServiceToken(service_name="edged", secret=secret, audience="linesd").token
        edge = fdapi.Lines(wait(linesd), tok, timeout=30)
        try:
            edge.SessionHeartbeat(tenant_id=int(tenant), session_id=0)
            sys.exit("kickoff_setup: a heartbeat of session 0 was taken")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                sys.exit(f"kickoff_setup: linesd refused the edge token: {e.code().name}: {e.details()}")
        with open(os.path.join(d, "edge.token"), "w") as f:
            f.write(tok + "\n")
    else:
        sys.exit(f"kickoff_setup: unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
