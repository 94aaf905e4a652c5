"""lines_setup.py - the gRPC side of bench/lines.sh's set-up (its SQL side,
the bulk lines, is in lines.sh), the requests and the pgbench script. Each
command prints shell assignments or writes files:

  wait TARGET                        until TARGET answers Health/Check SERVING
  setup AUTHD LINESD ADMIN_PW U0 N PASSWORD
                                     a tenant (CreateTenant by the platform
                                     admin), a reseller (CreateReseller), a
                                     catalog (5 streams, one bouquet of them,
                                     a package of it: 365 days, 4 connections,
                                     cost 0) and the first N lines through
                                     CreateLine, usernames U0..U0+N-1, all with
                                     PASSWORD: tenant= admin_token= reseller=
                                     package= stream= template=<the first line>
  pwhash HASH_KEY TENANT PASSWORD    the line password hash linesd computes
                                     (services/linesd/common.c,
                                     line_password_hash, with the key main.c
                                     derives from FRONTDESK_SECRET_HASH_KEY), in
                                     hex: lines.sh checks it against the
                                     template line's
  token AUTHD SECRET LINESD TENANT   a fresh edge (edged) service token for
                                     linesd, shown to linesd once (a heartbeat
                                     of session 0 answers INVALID_ARGUMENT after
                                     the token is verified: its verifier has
                                     authd's keys loaded before the load starts)
                                     token='...'
  live LINESD TOKEN TENANT STREAM U0 N PASSWORD IP UA OUT
                                     AuthorizePlayback of lines U0..U0+N-1 (64 at
                                     a time), each must be allowed with a new
                                     session; writes OUT: one serialized
                                     SessionHeartbeatRequest per session, in hex
                                     (bench_load --payload-file); sessions=<n>
  payloads OUT TENANT STREAM U0 N PASSWORD IP UA
                                     one AuthorizePlaybackRequest per line
                                     U0..U0+N-1 (stream STREAM, output format TS),
                                     serialized, in hex, one a line
  nodes AUTHD ROUTERD ADMIN_PW N DIR
                                     routerd's fleet (ROUTERD=1): N shared-pool
                                     nodes (RegisterNode by the platform admin,
                                     tenant 0, which every tenant may use) over
                                     4 regions (NODE_REGIONS), 4 failure domains
                                     each, capacity far above the run's load;
                                     one Heartbeat of each with its own key,
                                     which must answer UP. Writes DIR/nodes.keys
                                     (one a line) and DIR/nodebeat.hex (the
                                     keeper's HeartbeatRequest); prints
                                     pa_token=<the platform admin's token>
  nodes-up ROUTERD PA_TOKEN LABEL N  every node (ListNodes all_tenants) UP and
                                     ACTIVE: `audit LABEL ok`, else the counts
  measure CASE PID[,PID...] -- MEASURE...
                                     runs MEASURE (bench/measure.py and its
                                     arguments, whose WARMUP_S and SECS are its
                                     4th and 5th), samples the CPU of PID
                                     (routerd) over the same window, and
                                     prints MEASURE's output and
                                     xcpu CASE routerd_cores=
                                     routerd_us_per_call= (the calls from
                                     MEASURE's rate)
  probe LINESD TOKEN TENANT STREAM USERNAME PASSWORD IP UA
                                     three AuthorizePlayback calls of that line
                                     (while PostgreSQL logs every statement)
  pgbench OUT LOG OFFSET USERNAME VARS
                                     the pgbench script of one new session: the
                                     statements of the last AuthorizePlayback
                                     transaction in PostgreSQL's LOG (from byte
                                     OFFSET): BEGIN to COMMIT as linesd's
                                     backend ran them (the prepared statement
                                     linesd_authorize in the middle), in one
                                     pipeline, every parameter a pgbench
                                     variable s<statement>_<n> written to VARS
                                     (name=value a line, for -D), the one that
                                     was USERNAME the line's: U0 + (client_id +
                                     clients * n) % span, n counting each
                                     client's transactions, so that no two
                                     transactions of a run share a line
"""
import hashlib
import importlib
import os
import re
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402

lines_pb2 = importlib.import_module("frontdesk.v1.lines_pb2")
common_pb2 = importlib.import_module("frontdesk.v1.common_pb2")
routing_pb2 = importlib.import_module("frontdesk.v1.routing_pb2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


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
            sys.exit(f"lines_setup: {target} never became SERVING")
        time.sleep(0.1)


# Clients' countries, in turn by username (routerd routes each to its
# region; linesd without routerd ignores them), and the regions of the nodes.
COUNTRIES = ["GB", "DE", "US", "IN"]
NODE_REGIONS = [("eu-west", "GB"), ("eu-central", "DE"), ("us-east", "US"), ("ap-south", "IN")]
NODE_CAPACITY = 100000            # connections and Mbit/s: the run never nears high water


def authorize_request(tenant, stream, username, password, ip, ua):
    return lines_pb2.AuthorizePlaybackRequest(
        tenant_id=tenant, username=username, password=password, stream_id=stream, client_ip=ip,
        user_agent=ua, output_format=common_pb2.OUTPUT_FORMAT_TS,
        client_country=COUNTRIES[int(username) % len(COUNTRIES)] if username.isdigit() else "")


def parallel(n, fn, window=32):
    """fn(i) for i in range(n), `window` at a time in threads; the results in order."""
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
        sys.exit(f"lines_setup: {errs[0]}")
    return out


def node_load():
    """What every node reports: a light load, far below high water."""
    return routing_pb2.NodeLoad(active_connections=100, egress_mbps=400.0, cpu_percent=20.0)


def node_request(i):
    region, country = NODE_REGIONS[i % len(NODE_REGIONS)]
    host = f"n{i}.pool.bench.example"
    return routing_pb2.RegisterNodeRequest(
        tenant_id=0, name=f"bench-lines-{i:04d}",
        urls=[routing_pb2.NodeUrl(format=common_pb2.OUTPUT_FORMAT_TS, base_url=f"http://{host}:8080"),
              routing_pb2.NodeUrl(format=common_pb2.OUTPUT_FORMAT_M3U8, base_url=f"https://{host}")],
        region=region, country=country, failure_domain=f"{region}-fd{(i // len(NODE_REGIONS)) % 4}",
        max_connections=NODE_CAPACITY, max_egress_mbps=NODE_CAPACITY, weight=100 + (i % 3) * 50,
        tags=["bench"], idempotency_key=ikey())


def all_nodes(rt):
    out, token = {}, ""
    while True:
        r = rt.ListNodes(all_tenants=True, page_size=500, page_token=token)
        for n in r.nodes:
            out[n.id] = n
        if not (token := r.next_page_token):
            return out


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


# ---- the password hash, as linesd computes it ----

def kdf_derive(master, subkey_id, context):
    """libsodium's crypto_kdf_derive_from_key (BLAKE2b): key = the master
    key, salt = the subkey id (8 bytes, little endian) + 8 zero bytes,
    personal = the 8-byte context + 8 zero bytes, no message."""
    assert len(context) == 8
    return hashlib.blake2b(b"", digest_size=32, key=master,
                           salt=subkey_id.to_bytes(8, "little") + bytes(8),
                           person=context.encode() + bytes(8)).digest()


def line_password_hash(hash_key_hex, tenant, password):
    key = kdf_derive(bytes.fromhex(hash_key_hex), 2, "linepwhs")
    return hashlib.blake2b(tenant.to_bytes(8, "little", signed=True) + password.encode(),
                           digest_size=32, key=key).hexdigest()


# ---- the SQL linesd sends, from PostgreSQL's log ----

ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] ([A-Z]+):  (.*)$")
EXECUTE = re.compile(r"duration: [\d.]+ ms  execute ([^:]*): (.*)$", re.S)
PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")


def log_entries(path, offset):
    """(pid, level, text) of each entry of the log from byte offset on;
    continuation lines (tab-indented) joined to their entry."""
    with open(path, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").split("\n")
    out = []
    for line in lines:
        m = ENTRY.match(line)
        if m:
            out.append([int(m[1]), m[2], m[3]])
        elif out and line.startswith("\t"):
            out[-1][2] += "\n" + line[1:]
    return out


def captured_transaction(path, offset, name):
    """The statements (name, text, {n: value}) of the last transaction in the
    log that executed the prepared statement `name`: its BEGIN to its COMMIT,
    as one backend ran them."""
    execs = []                          # (pid, name, text, params)
    last = {}                           # pid -> its last LOG entry, when an execute
    for pid, level, text in log_entries(path, offset):
        if level == "LOG":
            m = EXECUTE.match(text)
            last[pid] = None
            if m:
                execs.append([pid, m[1], m[2], {}])
                last[pid] = execs[-1]
        elif level == "DETAIL" and text.startswith("parameters: ") and last.get(pid):
            for n, v in PARAM.findall(text):
                last[pid][3][int(n)] = None if v == "NULL" else v[1:-1].replace("''", "'")
    at = max((i for i, e in enumerate(execs) if e[1] == name), default=None)
    assert at is not None, f"no execution of {name} in the log"
    pid = execs[at][0]
    mine = [i for i, e in enumerate(execs) if e[0] == pid]
    k = mine.index(at)
    start = max((j for j in mine[:k + 1] if execs[j][2].upper().startswith("BEGIN")), default=None)
    end = min((j for j in mine[k:] if execs[j][2].upper().startswith("COMMIT")), default=None)
    assert start is not None and end is not None, f"{name}: its BEGIN or COMMIT not in the log"
    return [(e[1], e[2], e[3]) for e in (execs[j] for j in mine if start <= j <= end)]


def pgbench_script(statements, username, line_offset=None, rev=None):
    """The statements with their parameters as pgbench variables (s<i>_<n>),
    the one whose value is `username` as :u, an empty one as the literal ''
    (pgbench has no empty variables), NULL as NULL. Returns (script, vars)."""
    body, variables, found = [], [], 0
    for i, (name, text, params) in enumerate(statements):
        for n in sorted(params, reverse=True):          # $15 before $1
            v = params[n]
            if line_offset is not None and (name, n) in (("linesd_open_session", 2), ("linesd_open_fast", 2),
                                                         ("linesd_open_lock", 1)):
                # The hot path names the line by id: the id of username :u
                # (the bench's line ids and usernames differ by one offset).
                sub, found = ":l", found + (name != "linesd_open_lock")
            elif rev is not None and (name, n) in (("linesd_open_session", 3), ("linesd_open_fast", 3)):
                sub = str(rev)           # the fresh lines' rev (one for all)
            elif v == username:
                sub, found = ":u", found + 1
            elif v is None:
                sub = "NULL"
            elif v == "":
                sub = "''"
            else:
                sub = f":s{i}_{n}"
                variables.append(f"s{i}_{n}={v}")
            text = re.sub(r"\$" + str(n) + r"(?!\d)", sub, text)
        assert not re.search(r"\$\d", text), f"a parameter left in {text[:80]}"
        body.append(text.rstrip().rstrip(";") + ";")
    assert found == 1, f"the username {username} is in {found} parameters, not one, of " + "; ".join(
        f"{name}: {text[:60]}... {params}" for name, text, params in statements)
    return body, variables


def main(cmd, *args):
    if cmd == "wait":
        wait(args[0])
    elif cmd == "setup":
        authd, linesd, admin_pw, u0, n, password = args
        u0, n = int(u0), int(n)
        auth = fdapi.Auth(wait(authd), timeout=30)
        pa = auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token
        boss_pw = "bench-boss-password-1"
        r = auth.with_token(pa).CreateTenant(slug="bench-lines", name="Bench lines", admin_username="boss",
                                             admin_password=boss_pw)
        tenant = r.tenant.id
        boss = auth.Login(tenant_slug="bench-lines", username="boss", password=boss_pw).access_token
        res = auth.with_token(boss).CreateReseller(username="bench-reseller", password="bench-reseller-pw-1",
                                                   display_name="Bench reseller").reseller
        lines = fdapi.Lines(wait(linesd), boss, timeout=30)
        streams = [lines.CreateStream(name=f"Bench channel {i}", kind=lines_pb2.STREAM_KIND_LIVE,
                                      category="News", idempotency_key=ikey()).stream.id for i in range(5)]
        bq = lines.CreateBouquet(name="Bench bouquet", stream_ids=streams, idempotency_key=ikey()).bouquet
        pkg = lines.CreatePackage(name="Bench package", duration_days=365, credit_cost=0, max_connections=4,
                                  bouquet_ids=[bq.id], idempotency_key=ikey()).package
        ids = []
        for i in range(n):
            line = lines.CreateLine(reseller_id=res.id, username=str(u0 + i), password=password,
                                    package_id=pkg.id, idempotency_key=ikey()).line
            assert line.status == lines_pb2.LINE_STATUS_ACTIVE, line
            ids.append(line.id)
        print(f"tenant={tenant} admin_token='{boss}' reseller={res.id} package={pkg.id} "
              f"stream={streams[2]} template={ids[0]}")
    elif cmd == "pwhash":
        print(line_password_hash(args[0], int(args[1]), args[2]))
    elif cmd == "token":
        authd, secret, linesd, tenant = args
        auth = fdapi.Auth(grpc.insecure_channel(authd), timeout=30)
        tok = auth.IssueServiceToken(service_name="edged", secret=secret, audience="linesd").token
        edge = fdapi.Lines(wait(linesd), tok, timeout=30)
        try:
            edge.SessionHeartbeat(tenant_id=int(tenant), session_id=0)
            sys.exit("lines_setup: a heartbeat of session 0 was taken")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                sys.exit(f"lines_setup: linesd refused the edge token: {e.code().name}: {e.details()}")
        print(f"token='{tok}'")
    elif cmd == "live":
        linesd, tok, tenant, stream, u0, n, password, ip, ua, out = args
        tenant, stream, u0, n = int(tenant), int(stream), int(u0), int(n)
        ch = wait(linesd)
        call = ch.unary_unary("/frontdesk.v1.LinesService/AuthorizePlayback",
                              request_serializer=lines_pb2.AuthorizePlaybackRequest.SerializeToString,
                              response_deserializer=lines_pb2.AuthorizePlaybackResponse.FromString)
        md = fdapi.bearer(tok)
        window = threading.Semaphore(64)
        sessions = [0] * n
        bad = []

        def done(i, fut):
            try:
                r = fut.result()
                if not r.allowed or not r.session_id or r.session_reused:
                    bad.append(f"line {u0 + i}: {r}")
                sessions[i] = r.session_id
            except grpc.RpcError as e:
                bad.append(f"line {u0 + i}: {e.code().name}: {e.details()}")
            finally:
                window.release()

        for i in range(n):
            window.acquire()
            f = call.future(authorize_request(tenant, stream, str(u0 + i), password, ip, ua),
                            metadata=md, timeout=60)
            f.add_done_callback(lambda fut, i=i: done(i, fut))
        for _ in range(64):      # every callback has run
            window.acquire()
        if bad:
            sys.exit(f"lines_setup: {len(bad)} of {n} authorizations not allowed with a new session; "
                     f"first: {bad[0]}")
        assert len(set(sessions)) == n
        with open(out, "w") as f:
            for s in sessions:
                f.write(lines_pb2.SessionHeartbeatRequest(tenant_id=tenant, session_id=s)
                        .SerializeToString().hex() + "\n")
        print(f"sessions={n}")
    elif cmd == "payloads":
        out, tenant, stream, u0, n, password, ip, ua = args
        tenant, stream, u0, n = int(tenant), int(stream), int(u0), int(n)
        with open(out, "w") as f:
            for i in range(n):
                f.write(authorize_request(tenant, stream, str(u0 + i), password, ip, ua)
                        .SerializeToString().hex() + "\n")
    elif cmd == "nodes":
        authd, routerd, admin_pw, n, d = args
        n = int(n)
        auth = fdapi.Auth(wait(authd), timeout=30)
        pa = auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token
        ch = wait(routerd)
        admin = fdapi.Routing(ch, pa, timeout=30)
        regs = parallel(n, lambda i: admin.RegisterNode(node_request(i)))
        keys = [r.node_key for r in regs]
        assert all(keys) and len({r.node.id for r in regs}) == n, "a node without a key, or ids shared"
        beat = ch.unary_unary("/frontdesk.v1.RoutingService/Heartbeat",
                              request_serializer=routing_pb2.HeartbeatRequest.SerializeToString,
                              response_deserializer=routing_pb2.HeartbeatResponse.FromString)

        def first_beat(i):
            dr = beat(routing_pb2.HeartbeatRequest(load=node_load()), metadata=fdapi.bearer(keys[i]),
                      timeout=30).directive
            if dr.health != routing_pb2.NODE_HEALTH_UP or dr.state != routing_pb2.NODE_STATE_ACTIVE:
                raise AssertionError(f"node {regs[i].node.id}: first heartbeat answered {dr}")
        parallel(n, first_beat)
        with open(os.path.join(d, "nodes.keys"), "w") as f:
            f.writelines(k + "\n" for k in keys)
        with open(os.path.join(d, "nodebeat.hex"), "w") as f:
            f.write(routing_pb2.HeartbeatRequest(load=node_load()).SerializeToString().hex() + "\n")
        print(f"pa_token='{pa}'")
    elif cmd == "nodes-up":
        routerd, pa, label, want = args
        nodes = all_nodes(fdapi.Routing(wait(routerd), pa, timeout=30)).values()
        up = sum(1 for n in nodes if n.health == routing_pb2.NODE_HEALTH_UP and
                 n.state == routing_pb2.NODE_STATE_ACTIVE)
        print(f"audit {label} {'ok' if up == int(want) == len(nodes) else 'VIOLATIONS:'} "
              f"({len(nodes)} nodes, {up} UP and ACTIVE)")
    elif cmd == "measure":
        name, pids = args[0], [int(p) for p in args[1].split(",") if p]
        cmd_ = list(args[list(args).index("--") + 1:])
        warmup, secs = float(cmd_[5]), float(cmd_[6])   # measure.py CASE SERVER PG WARMUP SECS
        import subprocess
        p = subprocess.Popen(cmd_, stdout=subprocess.PIPE, text=True)
        time.sleep(warmup + 0.05)
        t0, c0 = time.monotonic(), sum(proc_cpu(x) for x in pids)
        time.sleep(secs - 0.1)
        t1, c1 = time.monotonic(), sum(proc_cpu(x) for x in pids)
        out = p.communicate()[0]
        sys.stdout.write(out)
        m = re.search(r"^bench \S+ rate=(\d+)", out, re.M)
        calls = float(m[1]) * (t1 - t0) if m else 0
        us = f"{(c1 - c0) / calls * 1e6:.1f}" if calls else "nan"
        print(f"xcpu {name} routerd_cores={(c1 - c0) / (t1 - t0):.2f} routerd_us_per_call={us}")
        sys.stdout.flush()
    elif cmd == "probe":
        linesd, tok, tenant, stream, username, password, ip, ua = args
        ch = grpc.insecure_channel(linesd)
        call = ch.unary_unary(
            "/frontdesk.v1.LinesService/AuthorizePlayback",
            request_serializer=lines_pb2.AuthorizePlaybackRequest.SerializeToString,
            response_deserializer=lines_pb2.AuthorizePlaybackResponse.FromString)
        end_call = ch.unary_unary(
            "/frontdesk.v1.LinesService/EndSession",
            request_serializer=lines_pb2.EndSessionRequest.SerializeToString,
            response_deserializer=lines_pb2.EndSessionResponse.FromString)

        def end(sid):
            end_call(lines_pb2.EndSessionRequest(tenant_id=int(tenant), session_id=sid),
                     metadata=fdapi.bearer(tok), timeout=30)
        # The first may reach a backend before it reloaded its settings; each
        # from another address, so that each opens a session through
        # PostgreSQL (the same request again is a reopen answered from memory).
        for k in range(3):
            addr = ip.rsplit(".", 1)[0] + "." + str(int(ip.rsplit(".", 1)[1]) + 1 + k)
            r = call(authorize_request(int(tenant), int(stream), username, password, addr, ua),
                     metadata=fdapi.bearer(tok), timeout=30)
            assert r.allowed, r
            end(r.session_id)       # the live sessions stay the set-up's
    elif cmd == "pgbench":
        out, log, offset, username, vars_out, line_offset, rev = args
        # The hot path's statement when the probe's line was held in memory
        # (open_session), else the full authorize_playback.
        statements = hot = None
        for name, hot in (("linesd_open_fast", True), ("linesd_open_session", True), ("linesd_authorize", False)):
            try:
                statements = captured_transaction(log, int(offset), name)
                break
            except AssertionError:
                continue
        assert statements, "no authorization's statements in the log"
        body, variables = pgbench_script(statements, username, int(line_offset) if hot else None,
                                         int(rev) if hot else None)
        print(f"# pgbench: {statements[-2][0] if hot else 'authorize_playback'} (the line {'in memory' if hot else 'read'})"
              " as linesd sent it")
        with open(out, "w") as f:
            f.write("-- written by bench/lines_setup.py: one AuthorizePlayback (a new session) as linesd\n"
                    "-- ran it, its statements and parameters as PostgreSQL logged them; the line:\n"
                    "-- n counts this client's transactions, nc is the number of clients\n"
                    "\\set i (:client_id + :nc * :n) % :span\n"
                    "\\set n :n + 1\n"
                    "\\set u :u0 + :i\n"
                    f"\\set l :u + {int(line_offset)}\n"
                    "\\startpipeline\n")
            f.write("".join(stmt + "\n" for stmt in body))
            f.write("\\endpipeline\n")
        with open(vars_out, "w") as f:
            f.write("".join(v + "\n" for v in variables))
    else:
        sys.exit(f"lines_setup: unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
