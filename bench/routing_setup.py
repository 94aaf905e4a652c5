"""routing_setup.py - the gRPC side of bench/routing.sh's set-up and checks.
Each command prints shell assignments or writes files:

  wait TARGET                        until TARGET answers Health/Check SERVING
  setup AUTHD ROUTERD ADMIN_PW NSHARED NTENANT DIR
                                     a tenant (CreateTenant by the platform
                                     admin) and NSHARED shared-pool nodes
                                     (RegisterNode by the platform admin, tenant
                                     0) plus NTENANT nodes of the tenant (by its
                                     admin), spread over regions and failure
                                     domains (see NODE_REGIONS); one Heartbeat
                                     of each with its own key, which must answer
                                     health UP. Writes DIR/nodes.keys (the node
                                     keys, one a line), DIR/nodes.ids, and
                                     prints tenant= admin_token= boss_token=
  grow AUTHD ROUTERD ADMIN_PW TENANT NSHARED NTENANT DIR
                                     more nodes, the same way, until there are
                                     NSHARED and NTENANT (the next indices:
                                     the spread over regions and domains goes
                                     on as if registered at once); appends to
                                     DIR/nodes.keys and DIR/nodes.ids
  payloads DIR TENANT                DIR/route.hex: RouteRequests of the tenant,
                                     one a line (clients in 12 countries and one
                                     without, TS, 4 Mbit/s, new sessions) and
                                     DIR/beat.hex: one HeartbeatRequest (node_id
                                     0: the key's node; a light load)
  token AUTHD SECRET ROUTERD         a fresh linesd service token for routerd
                                     (scope route), shown to routerd once (a
                                     Route without a tenant answers
                                     INVALID_ARGUMENT after the token is
                                     verified, so its verifier has authd's keys
                                     loaded before the load starts): token='...'
  sample ROUTERD TOKEN TENANT ADMIN_TOKEN
                                     one Route per client country: each must
                                     name a node that is UP, ACTIVE and the
                                     tenant's or the shared pool's, in the
                                     client's region when it has one there,
                                     and two backups, none the node, the first
                                     in another failure domain; prints them
  health ROUTERD ADMIN_TOKEN TENANT LABEL WANT_UP [SINCE_MS]
                                     every node of the shared pool and TENANT
                                     (ListNodes all_tenants, platform admin;
                                     the failover part's tenant left out) by
                                     health and state: prints
                                     `audit LABEL ok` when WANT_UP nodes are UP
                                     and ACTIVE (and, with SINCE_MS, all of them
                                     heartbeated at or after it), else the
                                     counts
"""
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402

R = fdapi.routing_pb2
C = fdapi.common_pb2
Routing = fdapi.Routing           # frontdesk.v1.RoutingService (routerd)
ROUTE = "/frontdesk.v1.RoutingService/Route"
HEARTBEAT = "/frontdesk.v1.RoutingService/Heartbeat"

# Regions the nodes are spread over, with a country of each (from the
# default FRONTDESK_ROUTERD_REGIONS); the tenant's own nodes use the first
# four, the shared pool all of them.
NODE_REGIONS = [("eu-west", "GB"), ("eu-central", "DE"), ("us-east", "US"), ("us-west", "US"),
                ("sa-east", "BR"), ("ap-south", "IN"), ("ap-east", "JP"), ("ap-southeast", "SG"),
                ("me-central", "AE"), ("af-south", "ZA"), ("oc", "AU"), ("eu-east", "")]
DOMAINS = 4                       # failure domains per region and owner
# The clients of the Route requests: one per country, and one unknown.
CLIENT_COUNTRIES = ["GB", "DE", "US", "BR", "IN", "JP", "SG", "AE", "ZA", "AU", "FR", "CA", ""]
COUNTRY_REGION = {"GB": "eu-west", "FR": "eu-west", "DE": "eu-central", "US": "us-east", "CA": "us-east",
                  "BR": "sa-east", "IN": "ap-south", "JP": "ap-east", "SG": "ap-southeast",
                  "AE": "me-central", "ZA": "af-south", "AU": "oc"}
MAX_CONN = 100000                 # capacity: far from the high-water mark at the load reported
MAX_EGRESS = 100000
BITRATE = 4000


def ikey():
    return "bench-" + uuid.uuid4().hex


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
            sys.exit(f"routing_setup: {target} never became SERVING")
        time.sleep(0.1)


def load():
    """The light load every simulated node reports: far below high water."""
    return R.NodeLoad(active_connections=100, egress_mbps=400.0, cpu_percent=20.0)


def node_request(i, tenant, owner_regions):
    region, country = owner_regions[i % len(owner_regions)]
    fd = f"{region}-{'sp' if tenant == 0 else 't'}{(i // len(owner_regions)) % DOMAINS}"
    host = f"n{i}.{'pool' if tenant == 0 else 't' + str(tenant)}.bench.example"
    return R.RegisterNodeRequest(
        tenant_id=tenant, name=f"bench-{'pool' if tenant == 0 else 'own'}-{i:04d}",
        urls=[R.NodeUrl(format=C.OUTPUT_FORMAT_TS, base_url=f"http://{host}:8080"),
              R.NodeUrl(format=C.OUTPUT_FORMAT_M3U8, base_url=f"https://{host}"),
              R.NodeUrl(format=C.OUTPUT_FORMAT_RTMP, base_url=f"rtmp://{host}/live")],
        region=region, country=country, failure_domain=fd, max_connections=MAX_CONN,
        max_egress_mbps=MAX_EGRESS, weight=100 + (i % 3) * 50, tags=["bench"],
        idempotency_key=ikey())


def parallel(n, fn, window=32):
    """fn(i) for i in range(n), `window` at a time in threads; the results in order."""
    out = [None] * n
    errs = []
    lock = threading.Lock()
    nxt = [0]

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
        sys.exit(f"routing_setup: {errs[0]}")
    return out


BOSS_PW = "bench-boss-password-1"


def grow(auth, routerd, admin_pw, tenant, shared_from, shared_to, own_from, own_to, d):
    """Shared-pool nodes [shared_from, shared_to) and the tenant's [own_from,
    own_to), one Heartbeat each (UP); keys and ids appended to DIR's files
    (DIR/nodes.shared: how many of them are the pool's). Returns the
    platform admin's and the tenant admin's tokens and the intervals told."""
    pa = auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token
    boss = auth.Login(tenant_slug="bench-routing", username="boss", password=BOSS_PW).access_token
    ch = wait(routerd)
    admin, own = Routing(ch, pa, timeout=30), Routing(ch, boss, timeout=30)
    regs = parallel(max(shared_to - shared_from, 0),
                    lambda i: admin.RegisterNode(node_request(shared_from + i, 0, NODE_REGIONS)))
    regs += parallel(max(own_to - own_from, 0),
                     lambda i: own.RegisterNode(node_request(own_from + i, tenant, NODE_REGIONS[:4])))
    keys = [r.node_key for r in regs]
    ids = [r.node.id for r in regs]
    assert all(keys) and len(set(ids)) == len(ids), "a node without a key, or ids shared"
    assert all(r.node.health == R.NODE_HEALTH_DOWN for r in regs), "a new node not DOWN"
    beat = ch.unary_unary(HEARTBEAT, request_serializer=R.HeartbeatRequest.SerializeToString,
                          response_deserializer=R.HeartbeatResponse.FromString)

    def first_beat(i):
        dr = beat(R.HeartbeatRequest(node_id=0, load=load()), metadata=fdapi.bearer(keys[i]),
                  timeout=30).directive
        if dr.health != R.NODE_HEALTH_UP or dr.state != R.NODE_STATE_ACTIVE or dr.drain:
            raise AssertionError(f"node {ids[i]}: first heartbeat answered {dr}")
        return dr.heartbeat_interval_ms
    intervals = set(parallel(len(keys), first_beat))
    with open(os.path.join(d, "nodes.keys"), "a") as f:
        f.writelines(k + "\n" for k in keys)
    with open(os.path.join(d, "nodes.ids"), "a") as f:
        f.writelines(f"{i}\n" for i in ids)
    with open(os.path.join(d, "nodes.shared"), "w") as f:
        f.write(f"{max(shared_to, shared_from)}\n")
    return pa, boss, intervals


def main(cmd, *args):
    if cmd == "wait":
        wait(args[0])
    elif cmd == "setup":
        authd, routerd, admin_pw, nshared, ntenant, d = args
        auth = fdapi.Auth(wait(authd), timeout=30)
        pa = auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token
        tenant = auth.with_token(pa).CreateTenant(slug="bench-routing", name="Bench routing",
                                                  admin_username="boss", admin_password=BOSS_PW).tenant.id
        pa, boss, intervals = grow(auth, routerd, admin_pw, tenant, 0, int(nshared), 0, int(ntenant), d)
        print(f"tenant={tenant} admin_token='{pa}' boss_token='{boss}' "
              f"told_interval_ms={','.join(map(str, sorted(intervals)))}")
    elif cmd == "grow":
        authd, routerd, admin_pw, tenant, nshared, ntenant, d = args
        with open(os.path.join(d, "nodes.ids")) as f:
            have = len(f.read().split())
        with open(os.path.join(d, "nodes.shared")) as f:
            have_shared = int(f.read())
        auth = fdapi.Auth(wait(authd), timeout=30)
        pa, boss, intervals = grow(auth, routerd, admin_pw, int(tenant), have_shared, int(nshared),
                                   have - have_shared, int(ntenant), d)
        print(f"admin_token='{pa}' boss_token='{boss}' "
              f"told_interval_ms={','.join(map(str, sorted(intervals)))}")
    elif cmd == "payloads":
        d, tenant = args[0], int(args[1])
        with open(os.path.join(d, "route.hex"), "w") as f:
            for i in range(64):
                c = CLIENT_COUNTRIES[i % len(CLIENT_COUNTRIES)]
                f.write(R.RouteRequest(tenant_id=tenant, line_id=1000 + i, session_id=0, stream_id=7,
                                       client_ip=f"203.0.113.{i + 1}", client_country=c,
                                       bitrate_kbps=BITRATE, output_format=C.OUTPUT_FORMAT_TS)
                        .SerializeToString().hex() + "\n")
        with open(os.path.join(d, "beat.hex"), "w") as f:
            f.write(R.HeartbeatRequest(node_id=0, load=load()).SerializeToString().hex() + "\n")
    elif cmd == "token":
        authd, secret, routerd = args
        auth = fdapi.Auth(grpc.insecure_channel(authd), timeout=30)
        tok = auth.IssueServiceToken(service_name="linesd", secret=secret, audience="routerd").token
        rt = Routing(wait(routerd), tok, timeout=30)
        try:
            rt.Route(tenant_id=0)
            sys.exit("routing_setup: a Route without a tenant was answered")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                sys.exit(f"routing_setup: routerd refused linesd's token: {e.code().name}: {e.details()}")
        print(f"token='{tok}'")
    elif cmd == "sample":
        routerd, tok, tenant, admin_tok = args
        tenant = int(tenant)
        ch = wait(routerd)
        nodes = all_nodes(Routing(ch, admin_tok, timeout=30))
        rt = Routing(ch, tok, timeout=30)
        bad = []
        for c in CLIENT_COUNTRIES:
            r = rt.Route(tenant_id=tenant, line_id=1, stream_id=7, client_ip="203.0.113.9", client_country=c,
                         bitrate_kbps=BITRATE, output_format=C.OUTPUT_FORMAT_TS)
            picked = [r.node] + list(r.backups)
            why = []
            for p in picked:
                n = nodes.get(p.node_id)
                if n is None:
                    why.append(f"node {p.node_id} unknown")
                elif n.tenant_id not in (0, tenant) or n.health != R.NODE_HEALTH_UP or \
                        n.state != R.NODE_STATE_ACTIVE:
                    why.append(f"node {p.node_id} of tenant {n.tenant_id}, health {n.health}, state {n.state}")
                elif not p.url.startswith("http://") or p.region != n.region:
                    why.append(f"node {p.node_id}: url {p.url}, region {p.region}")
            if len(r.backups) != 2 or len({p.node_id for p in picked}) != 3:
                why.append(f"{len(r.backups)} backups: {[p.node_id for p in r.backups]}")
            elif r.backups[0].failure_domain == r.node.failure_domain:
                why.append("the first backup in the node's failure domain")
            want = COUNTRY_REGION.get(c)
            if want and r.node.region != want:
                why.append(f"node in {r.node.region}, client's region {want}")
            line = (f"sample route client={c or '-'}: node {r.node.node_id} {r.node.region}/"
                    f"{r.node.failure_domain} {r.node.url} backups " +
                    ", ".join(f"{b.node_id} {b.region}/{b.failure_domain}" for b in r.backups) +
                    f" cap={r.bitrate_cap_kbps} sticky={r.sticky}")
            print(line + (" WRONG: " + "; ".join(why) if why else ""))
            if why:
                bad.append(c)
        print(f"audit sample-routes {'ok' if not bad else 'VIOLATIONS: clients ' + ' '.join(bad)}"
              f" ({len(CLIENT_COUNTRIES)} routes)")
    elif cmd == "health":
        routerd, admin_tok, tenant, label, want = args[:5]
        since = int(args[5]) if len(args) > 5 else 0
        nodes = [n for n in all_nodes(Routing(wait(routerd), admin_tok, timeout=30)).values()
                 if n.tenant_id in (0, int(tenant))]
        up = [n for n in nodes if n.health == R.NODE_HEALTH_UP and n.state == R.NODE_STATE_ACTIVE]
        # *_at are Unix seconds (common.proto); taken as milliseconds if that large.
        fresh = [n for n in up if (n.last_heartbeat_at / 1000 if n.last_heartbeat_at > 10**11
                                   else n.last_heartbeat_at) >= since]
        by = {}
        for n in nodes:
            k = R.NodeHealth.Name(n.health)[len("NODE_HEALTH_"):].lower()
            by[k] = by.get(k, 0) + 1
        counts = " ".join(f"{k}={v}" for k, v in sorted(by.items()))
        ok = len(up) == int(want) and len(fresh) == len(up)
        print(f"audit {label} " + ("ok" if ok else "VIOLATIONS:") +
              f" ({len(nodes)} nodes: {counts}; {len(fresh)} up with a heartbeat since the run began)")
    else:
        sys.exit(f"routing_setup: unknown command {cmd}")


def all_nodes(rt):
    """Every node, by id (ListNodes all_tenants, paged)."""
    out, token = {}, ""
    while True:
        r = rt.ListNodes(all_tenants=True, page_size=500, page_token=token)
        for n in r.nodes:
            out[n.id] = n
        token = r.next_page_token
        if not token:
            return out


if __name__ == "__main__":
    main(*sys.argv[1:])
