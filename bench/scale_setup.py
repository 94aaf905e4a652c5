"""scale_setup.py - the Python side of bench/scale.sh (issue 14, part 3: scale
data). The gRPC set-up is lines_setup.py's and kickoff_setup.py's (called by
scale.sh as they are); the bulk data is SQL in scale.sh. Each command prints
shell assignments or `key=value` lines, or writes files:

  pwhashes HASH_KEY PASSWORD TENANTS_FILE OUT
                                     the line password hash linesd computes
                                     (lines_setup.line_password_hash: keyed by
                                     tenant) of PASSWORD for every tenant id of
                                     TENANTS_FILE (one a line): OUT in COPY text
                                     format, `tenant<TAB>\\x<hash>`
  beats OUT TENANT IDS_FILE          one SessionHeartbeatRequest per session id
                                     of IDS_FILE (one a line), serialized, in hex
  authreqs OUT TENANT STREAM PASSWORD IP UA USERNAMES_FILE
                                     one AuthorizePlaybackRequest per username
                                     of USERNAMES_FILE (lines_setup's, output
                                     format TS, the client's country by
                                     username), serialized, in hex
  startup LINESD TOKEN_FILE REQ_HEX LOG -- COMMAND...
                                     starts COMMAND (a linesd replica, its
                                     environment this process's) with its
                                     output to LOG and times it from just
                                     before the exec: until LINESD answers
                                     Health/Check SERVING (ready), and until
                                     the AuthorizePlayback request REQ_HEX
                                     (with the bearer token in TOKEN_FILE) is
                                     answered allowed (first authorization,
                                     asked from the moment it is ready). The
                                     replica is left running; prints
                                     pid= listen_ms= ready_ms= first_auth_ms=
                                     rss_kb= (RSS once the first one is
                                     answered), then, once linesd logs the
                                     end of its preload (rules.c, at info),
                                     preload_lines= preload_tenants=
                                     preload_logged_ms= preloaded_ms= (seen,
                                     from the start) rss_preloaded_kb=
  idle SECS STACK...                 an idle window of SECS seconds over every
                                     STACK (label:pg_host:pg_port:postmaster:
                                     linesd_pid, pg_stat_statements loaded):
                                     pg_stat_statements tracking on ('top')
                                     and reset at the start, off after; the
                                     database's committed transactions
                                     (pg_stat_database), the transactions and
                                     statements of every service role
                                     (pg_stat_statements: BEGIN calls), their
                                     backends' CPU (pg_stat_activity's pids
                                     and /proc), linesd's CPU and PostgreSQL's
                                     (measure.py's pg_cpu) over the window;
                                     prints `idle LABEL ...` lines and each
                                     role's busiest statements (`idle_stmt`)
"""
import importlib
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402
import lines_setup  # noqa: E402
import measure  # noqa: E402

lines_pb2 = importlib.import_module("frontdesk.v1.lines_pb2")
PRELOAD = re.compile(r"(\d+) lines' rules of (\d+) tenants read into memory in (\d+) ms")
ROLES = ("frontdesk_linesd", "frontdesk_routerd", "frontdesk_authd", "frontdesk_billingd")


def read_lines(path):
    with open(path) as f:
        return [x.strip() for x in f if x.strip()]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fast_channel(target):
    """A channel that retries a refused connection every few ms (the
    default backoff of 1 s would be what a start-up time measures)."""
    return grpc.insecure_channel(target, options=[
        ("grpc.initial_reconnect_backoff_ms", 5), ("grpc.min_reconnect_backoff_ms", 5),
        ("grpc.max_reconnect_backoff_ms", 20), ("grpc.enable_retries", 0)])


def startup(target, token_file, req_hex, log, cmd):
    token = read_lines(token_file)[0]
    req = bytes.fromhex(read_lines(req_hex)[0])
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    with open(log, "ab") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ch = fast_channel(target)
    health = ch.unary_unary("/grpc.health.v1.Health/Check")
    auth = ch.unary_unary("/frontdesk.v1.LinesService/AuthorizePlayback",
                          response_deserializer=lines_pb2.AuthorizePlaybackResponse.FromString)
    deadline = t0 + 120
    ready = first = listening = None
    host, port = target.rsplit(":", 1)
    while listening is None:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            listening = time.monotonic()
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.001)
    while ready is None:
        if p.poll() is not None:
            sys.exit(f"scale_setup: linesd exited ({p.returncode}) before it was ready; see {log}")
        try:
            if health(b"", timeout=0.5) == b"\x08\x01":
                ready = time.monotonic()
                break
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            sys.exit("scale_setup: linesd was not SERVING within 120 s")
        time.sleep(0.002)
    last = ""
    while first is None:
        try:
            r = auth(req, metadata=fdapi.bearer(token), timeout=10)
            if r.allowed:
                first = time.monotonic()
                break
            last = f"denied: {r.denial_reason} {r.message}"
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        if time.monotonic() > deadline:
            sys.exit(f"scale_setup: no allowed authorization within 120 s ({last})")
        time.sleep(0.002)
    rss_first = rss_kb(p.pid)
    # The preload (rules.c) logs its end at info: its count, tenants and time.
    pre, pre_at = None, None
    preloads = os.environ.get("FRONTDESK_LINESD_LINE_CACHE", "1") != "0"
    while preloads and pre is None and time.monotonic() < t0 + 600 and p.poll() is None:
        with open(log, "rb") as f:
            f.seek(offset)
            m = PRELOAD.search(f.read().decode("utf-8", "replace"))
        if m:
            pre, pre_at = m, time.monotonic()
        else:
            time.sleep(0.01)
    tail = (f"preload_lines={pre[1]} preload_tenants={pre[2]} preload_logged_ms={pre[3]} "
            f"preloaded_ms={(pre_at - t0) * 1e3:.0f} rss_preloaded_kb={rss_kb(p.pid)}" if pre else
            "preload_lines=- (no preload line in the log: FRONTDESK_LINESD_LINE_CACHE=0 or LOG_LEVEL above info?)")
    print(f"pid={p.pid} listen_ms={(listening - t0) * 1e3 if listening else float('nan'):.0f} "
          f"ready_ms={(ready - t0) * 1e3:.0f} first_auth_ms={(first - t0) * 1e3:.0f} "
          f"rss_kb={rss_first} {tail}")


def psql(host, port, sql):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "postgres",
                        "-d", "frontdesk", "-tA", "-F", "\t", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"scale_setup: psql: {r.stderr.strip()}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def backends(host, port):
    """pid -> role of every backend of the cluster with a role of ours."""
    rows = psql(host, port, "SELECT pid, usename FROM pg_stat_activity WHERE usename LIKE 'frontdesk\\_%'")
    return {int(pid): role for pid, role in rows}


def xacts(host, port):
    (c, r), = psql(host, port, "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = 'frontdesk'")
    return int(c), int(r)


def idle(secs, stacks):
    st = []
    for s in stacks:
        label, host, port, postmaster, linesd = s.split(":")
        st.append(dict(label=label, host=host, port=port, postmaster=int(postmaster), linesd=int(linesd)))
    for s in st:
        psql(s["host"], s["port"], "ALTER SYSTEM SET pg_stat_statements.track = 'top'")
        psql(s["host"], s["port"], "SELECT pg_reload_conf()")
    time.sleep(0.5)
    for s in st:
        psql(s["host"], s["port"], "SELECT pg_stat_statements_reset()")
        s["x0"] = xacts(s["host"], s["port"])
        s["b0"] = backends(s["host"], s["port"])
    t0 = time.monotonic()
    for s in st:
        s["c0"] = {pid: measure.proc_cpu(pid)[0] for pid in s["b0"]}
        s["l0"], s["g0"] = measure.proc_cpu(s["linesd"])[0], measure.pg_cpu(s["postmaster"])
    time.sleep(secs)
    t1 = time.monotonic()
    for s in st:
        s["l1"], s["g1"] = measure.proc_cpu(s["linesd"])[0], measure.pg_cpu(s["postmaster"])
        s["c1"] = {pid: measure.proc_cpu(pid)[0] for pid in s["b0"]}
    w = t1 - t0
    for s in st:
        s["x1"] = xacts(s["host"], s["port"])
        rows = psql(s["host"], s["port"],
                    "SELECT r.rolname, s.calls, s.total_exec_time, s.rows, "
                    "regexp_replace(left(s.query, 100), '\\s+', ' ', 'g') "
                    "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
                    "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = 'frontdesk') "
                    "ORDER BY s.calls DESC")
        psql(s["host"], s["port"], "ALTER SYSTEM SET pg_stat_statements.track = 'none'")
        psql(s["host"], s["port"], "SELECT pg_reload_conf()")
        # The backends that were there at the start (pools, the listener);
        # one that ended in the window counts up to its last sample (0).
        cpu = {}
        for pid, role in s["b0"].items():
            c1 = s["c1"].get(pid, 0)
            cpu[role] = cpu.get(role, 0) + (c1 - s["c0"][pid] if c1 else 0)
        pg = sum(s["g1"].get(k, 0) - s["g0"].get(k, 0) for k in set(s["g0"]) | set(s["g1"]))
        # Our own psql sessions between the two reads: reset, 2 reads (about
        # 4 transactions) are in the database's count.
        dx = (s["x1"][0] - s["x0"][0]) + (s["x1"][1] - s["x0"][1])
        print(f"idle {s['label']} window_s={w:.1f} db_xacts={dx} db_xacts_per_min={dx / w * 60:.0f} "
              f"linesd_cpu_ms={(s['l1'] - s['l0']) * 1e3:.0f} linesd_cores={(s['l1'] - s['l0']) / w:.4f} "
              f"pg_cpu_ms={pg * 1e3:.0f} pg_cores={pg / w:.4f}")
        for role in ROLES:
            mine = [r for r in rows if r[0] == role]
            # Every transaction of the pool (services/runtime/db.c) sets its
            # statement timeout (with the tenant, in a tenant's) first; a
            # ping (SELECT 1) is a transaction of its own. BEGIN itself, a
            # prepared utility statement, is not seen by pg_stat_statements.
            tx = sum(int(r[1]) for r in mine if re.match(r"SELECT set_config\('(statement_timeout|frontdesk\.tenant_id)'", r[4]))
            pings = sum(int(r[1]) for r in mine if r[4].strip() in ("SELECT $1", "SELECT 1"))
            stmts = sum(int(r[1]) for r in mine
                        if not re.match(r"(?i)(BEGIN|COMMIT|ROLLBACK|SET |SELECT set_config|SELECT \$1$|SELECT 1$)", r[4].strip()))
            ms = sum(float(r[2]) for r in mine)
            print(f"idle_role {s['label']} {role.replace('frontdesk_', '')} xacts={tx} "
                  f"xacts_per_min={tx / w * 60:.0f} pings={pings} statements={stmts} exec_ms={ms:.1f} "
                  f"backend_cpu_ms={cpu.get(role, 0) * 1e3:.0f}")
            for r in [r for r in mine if not re.match(r"(?i)(BEGIN|COMMIT|SELECT set_config|SELECT \$1$)", r[4].strip())][:10]:
                print(f"idle_stmt {s['label']} {role.replace('frontdesk_', '')} calls={r[1]} "
                      f"exec_ms={float(r[2]):.1f} rows={r[3]} {r[4]}")
    sys.stdout.flush()


def main(cmd, *args):
    if cmd == "pwhashes":
        hash_key, password, tenants, out = args
        with open(out, "w") as f:
            for t in read_lines(tenants):
                f.write(f"{t}\t\\\\x{lines_setup.line_password_hash(hash_key, int(t), password)}\n")
    elif cmd == "beats":
        out, tenant, ids = args
        with open(out, "w") as f:
            for s in read_lines(ids):
                f.write(lines_pb2.SessionHeartbeatRequest(tenant_id=int(tenant), session_id=int(s))
                        .SerializeToString().hex() + "\n")
    elif cmd == "authreqs":
        out, tenant, stream, password, ip, ua, users = args
        with open(out, "w") as f:
            for u in read_lines(users):
                f.write(lines_setup.authorize_request(int(tenant), int(stream), u, password, ip, ua)
                        .SerializeToString().hex() + "\n")
    elif cmd == "startup":
        cut = list(args).index("--")
        target, token_file, req_hex, log = args[:cut]
        startup(target, token_file, req_hex, log, list(args[cut + 1:]))
    elif cmd == "idle":
        idle(float(args[0]), args[1:])
    else:
        sys.exit(f"scale_setup: unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
