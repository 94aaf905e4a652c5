#!/usr/bin/python3
"""edge_bench.py - the body of bench/edge.sh (which starts the PostgreSQL and
sets FD_BUILD_DIR, FD_TEST_PGHOST, FD_TEST_PGPORT). Brings up the platform
with edged (tests/lib/fdstack.py), a tenant reached through /t/{slug}/, a
catalog of 5,000 live streams, lines, one HLS node (nginx with the shipped
docker/nginx/hls-node.conf) registered and heartbeating, then measures four
pairs, interleaved round by round, each beside its baseline at the same
concurrency:

  seg_auth      nginx serving a segment behind auth_request to edged
  seg_static    (baseline) nginx serving the same file with no auth_request
  seg_auth204   (bound) the same shipped config, its auth_request answered 204 by
                a plain nginx instead of edged: what auth_request costs nginx itself
  live_new      /live/U/P/ID.m3u8 through edged: a new session each (302)
  grpc_new      (baseline) AuthorizePlayback over gRPC (bench_load), a new session each
  login         player_api.php login through edged
  grpc_login    (baseline) AuthorizePlayback with stream 0 over gRPC
  m3u_5000      get.php m3u_plus, 5,000 streams, through edged
  m3u_static    (baseline) nginx serving the same bytes as a static file

HTTP load: wrk (Debian), --latency; gRPC load: bench_load. Prints each run,
then medians, ratios and the goals (>= 50%, 80%, 80%, 30% and m3u p99 <= 50 ms).
Knobs: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNS (32), BENCH_LINES (400).
"""
import concurrent.futures
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import fdedge  # noqa: E402
import fdstack  # noqa: E402
import fdtest  # noqa: E402
from fdstack import C, L, ikey  # noqa: E402

SECS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNS = int(os.environ.get("BENCH_CONNS", "32"))
NLINES = int(os.environ.get("BENCH_LINES", "400"))
NSTREAMS = 5000
MAX_CONNS = 100          # per line: NLINES x MAX_CONNS new sessions per run at most
SEGMENT_BYTES = 16 * 1024
PASSWORD = "bench-edge-pw-1"
UA = "bench-player/1.0"
AUTH = "/frontdesk.v1.LinesService/AuthorizePlayback"
WRK = os.environ.get("WRK", "/usr/bin/wrk")


def say(*a):
    print(*a, flush=True)


# --- load generators ----------------------------------------------------------

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(case, url, script=None, conns=CONNS, headers=()):
    cmd = [WRK, "-t2", f"-c{conns}", f"-d{SECS}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=SECS + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    r = dict(case=case, rate=rate, p50=lat.get("50", 0.0), p99=lat.get("99", 0.0), errors=errors)
    say(f"bench {case} rate={rate:.0f}/s p50_ms={r['p50']:.2f} p99_ms={r['p99']:.2f} errors={errors}")
    return r


def bench_load(case, target, payload_file, token, conns=CONNS):
    cmd = [os.path.join(fdtest.BUILD, "bench", "bench_load"), "--target", target, "--method", AUTH,
           "--case", case, "--inflight", str(conns), "--conns", "2", "--seconds", str(SECS), "--warmup", "1",
           "--metadata", f"authorization=Bearer {token}", "--payload-file", payload_file]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=SECS + 60)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("bench "))
    kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
    r = dict(case=case, rate=float(kv["rate"]), p50=float(kv["p50_ms"]), p99=float(kv["p99_ms"]),
             errors=int(kv["errors"]))
    say(line)
    return r


# --- the platform ---------------------------------------------------------------

def make_catalog(t):
    def one(i):
        return t.lines.CreateStream(name=f"Channel {i:04d}", kind=L.STREAM_KIND_LIVE,
                                    category=f"Group {i % 40:02d}", epg_channel=f"ch{i}.bench",
                                    logo_url=f"http://logos.example/{i}.png", idempotency_key=ikey()).stream.id
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(one, range(NSTREAMS)))
    b = t.lines.CreateBouquet(name="all", stream_ids=ids, idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name="bench", duration_days=30, credit_cost=0, max_connections=MAX_CONNS,
                                bouquet_ids=[b.id], idempotency_key=ikey()).package
    return ids, pkg


def make_lines(t, pkg):
    def one(i):
        return t.lines.CreateLine(reseller_id=t.id, package_id=pkg.id, username=f"bench{i:05d}",
                                  password=PASSWORD, idempotency_key=ikey()).line
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(one, range(NLINES)))


def auth_payloads(path, tenant, lines, stream, n):
    """n AuthorizePlayback requests: line i % NLINES from address i (all new sessions)."""
    with open(path, "w") as f:
        for i in range(n):
            ln = lines[i % len(lines)]
            req = L.AuthorizePlaybackRequest(tenant_id=tenant, username=ln.username, password=PASSWORD,
                                             stream_id=stream, client_ip=client_ip(i), user_agent=UA,
                                             output_format=C.OUTPUT_FORMAT_M3U8 if stream else 0)
            f.write(req.SerializeToString().hex() + "\n")


def client_ip(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


LIVE_LUA = r"""
-- Each request a new session: line n % NLINES, client address n (through
-- X-Forwarded-For, which edged believes from 127.0.0.1 in this benchmark).
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  n = tid * 4000000
end
function request()
  n = n + 1
  -- wrk runs LuaJIT (Lua 5.1): no bitwise operators.
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  local user = string.format("bench%05d", n % NLINES)
  return wrk.format("GET", PREFIX .. "/live/" .. user .. "/PASSWORD/STREAM.m3u8",
                    {["X-Forwarded-For"] = ip, ["User-Agent"] = "UA"})
end
"""


def delete_sessions(p, tenant):
    p.sql(f"DELETE FROM frontdesk.sessions WHERE tenant_id = {tenant}")
    p.sql("VACUUM ANALYZE frontdesk.sessions")


def main():
    tmp = tempfile.mkdtemp(prefix="fd-edge-bench-")
    p = fdstack.Stack(routerd_replicas=1, linesd_env={
        "FRONTDESK_LINESD_THREADS": "8", "FRONTDESK_LINESD_DB_POOL": "8", "FRONTDESK_SESSION_TIMEOUT": "3600",
        "FRONTDESK_PLAYBACK_FAIL_MAX_IP": "1000000", "FRONTDESK_PLAYBACK_FAIL_MAX_USER": "100000",
        "FRONTDESK_LOG_LEVEL": "warn"},
        edged_env={"FRONTDESK_EDGED_TRUSTED_PROXIES": "127.0.0.1", "FRONTDESK_EDGED_THREADS": "16",
                   "FRONTDESK_LOG_LEVEL": "warn"})
    ng_auth = ng_static = ng_bound = sim = None
    try:
        t = p.tenant()
        say(f"setting up: {NSTREAMS} streams, {NLINES} lines (max {MAX_CONNS} connections each)")
        t0 = time.time()
        streams, pkg = make_catalog(t)
        lines = make_lines(t, pkg)
        say(f"set up in {time.time() - t0:.0f} s")
        prefix = f"/t/{t.slug}"
        p.edge_url = p.edge_url.replace("127.0.0.1", "localhost")   # a platform host name
        base = p.edge_url + prefix
        # The HLS node: a static segment and playlist, served by the
        # shipped config behind auth_request, and by a plain nginx (baseline).
        root = os.path.join(tmp, "hls")
        os.makedirs(os.path.join(root, str(streams[0])))
        seg = os.urandom(SEGMENT_BYTES)
        with open(os.path.join(root, str(streams[0]), "seg0.ts"), "wb") as f:
            f.write(seg)
        with open(os.path.join(root, str(streams[0]), "index.m3u8"), "w") as f:
            f.write("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg0.ts\n")
        sim = fdedge.NodeSim(p, t)
        port = fdtest.free_port()
        node, _ = sim.add(urls={C.OUTPUT_FORMAT_M3U8: f"http://127.0.0.1:{port}"}, max_connections=1_000_000)
        secret = subprocess.run([fdtest.binary("edged"), "--node-secret", str(node.id)], capture_output=True,
                                text=True, check=True,
                                env={**os.environ, "FRONTDESK_EDGED_SIGNING_KEYS": p.edged_signing_keys}
                                ).stdout.strip()
        ng_auth = fdedge.Nginx(fdedge.HLS_CONF, {"edged": p.edged.target, "node_id": node.id,
                                                 "node_secret": secret, "root": root, "port": port})
        # The player's way in: login, playlist, then a session's token.
        ln = lines[0]
        login = f"{base}/player_api.php?username={ln.username}&password={PASSWORD}"
        m3u = f"{base}/get.php?username={ln.username}&password={PASSWORD}&type=m3u_plus&output=m3u8"
        try:
            with urllib.request.urlopen(m3u, timeout=30) as r:
                playlist = r.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"edge_bench: get.php answered {e.code}: {e.read()[:300]!r}")
        assert playlist.count(b"#EXTINF") == NSTREAMS, playlist[:300]
        static_dir = os.path.join(tmp, "static")
        os.makedirs(static_dir)
        with open(os.path.join(static_dir, "playlist.m3u"), "wb") as f:
            f.write(playlist)
        with open(os.path.join(static_dir, "seg0.ts"), "wb") as f:
            f.write(seg)
        ng_static = StaticNginx(tmp, static_dir)
        ng_bound = fdedge.Nginx(fdedge.HLS_CONF, {"edged": f"127.0.0.1:{ng_static.port}", "node_id": node.id,
                                                  "node_secret": secret, "root": root})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(f"{base}/live/{ln.username}/{PASSWORD}/{streams[0]}.m3u8", timeout=10)
            raise SystemExit("edge_bench: /live/ did not redirect")
        except urllib.error.HTTPError as e:
            location = e.headers["Location"]
        seg_url = location.rsplit("/", 1)[0] + "/seg0.ts"
        with urllib.request.urlopen(seg_url, timeout=5) as r:
            assert r.read() == seg
        say(f"playlist {len(playlist)} bytes; node {node.id} at {ng_auth.url}")
        # Payloads and scripts.
        token = p.service_token("edged", "linesd")
        new_file = os.path.join(tmp, "new.hex")
        auth_payloads(new_file, t.tenant, lines, streams[0], NLINES * MAX_CONNS // 2)
        login_file = os.path.join(tmp, "login.hex")
        auth_payloads(login_file, t.tenant, lines[:1], 0, 1)
        lua = os.path.join(tmp, "live.lua")
        with open(lua, "w") as f:
            f.write(LIVE_LUA.replace("NLINES", str(NLINES)).replace("PREFIX", repr(prefix))
                    .replace("PASSWORD", PASSWORD).replace("STREAM", str(streams[0])).replace('"UA"', repr(UA)))
        lt = p.linesd[0].target
        runs = {}

        def run(r):
            runs.setdefault(r["case"], []).append(r)

        for rnd in range(ROUNDS):
            say(f"--- round {rnd + 1} of {ROUNDS}")
            run(wrk("seg_static", f"{ng_static.url}/seg0.ts"))
            run(wrk("seg_auth", seg_url))
            run(wrk("seg_auth204", seg_url.replace(ng_auth.url, ng_bound.url)))
            delete_sessions(p, t.tenant)
            run(bench_load("grpc_new", lt, new_file, token))
            delete_sessions(p, t.tenant)
            run(wrk("live_new", p.edge_url + "/", script=lua))
            delete_sessions(p, t.tenant)
            run(bench_load("grpc_login", lt, login_file, token))
            run(wrk("login", login))
            run(wrk("m3u_static", f"{ng_static.url}/playlist.m3u"))
            run(wrk("m3u_5000", m3u))
        say("--- medians")
        med = {}
        for case, rs in runs.items():
            med[case] = {k: statistics.median(r[k] for r in rs) for k in ("rate", "p50", "p99", "errors")}
            m = med[case]
            say(f"median {case} rate={m['rate']:.0f}/s p50_ms={m['p50']:.2f} p99_ms={m['p99']:.2f} "
                f"errors={m['errors']:.0f}")
        say("--- ratios and goals")
        for case, base_case, goal in [("seg_auth", "seg_static", 0.5), ("seg_auth204", "seg_static", 0.0),
                                      ("seg_auth", "seg_auth204", 0.0), ("live_new", "grpc_new", 0.8),
                                      ("login", "grpc_login", 0.8), ("m3u_5000", "m3u_static", 0.3)]:
            ratios = [a["rate"] / b["rate"] for a, b in zip(runs[case], runs[base_case])]
            ratio = statistics.median(ratios)
            say(f"ratio {case}/{base_case} median={ratio:.2f} rounds={','.join(f'{x:.2f}' for x in ratios)} "
                f"goal>={goal} {'met' if ratio >= goal else 'NOT met'}")
        p99 = med["m3u_5000"]["p99"]
        say(f"goal m3u_5000 p99_ms={p99:.1f} <= 50 {'met' if p99 <= 50 else 'NOT met'}")
    finally:
        for x in (ng_bound, ng_static, ng_auth):
            if x:
                x.stop()
        if sim:
            sim.close()
        p.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


class StaticNginx(fdedge.Proc):
    """The baselines' nginx: the same files, no auth_request (a private
    config: it stands for "nginx serving a static file", nothing shipped)."""

    def __init__(self, tmp, root):
        self.name = "nginx static"
        self.port = fdtest.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        d = os.path.join(tmp, "nginx-static")
        os.makedirs(d)
        os.chmod(tmp, 0o755)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes auto; pid nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw;
  scgi_temp_path {d}/sc;
  server {{ listen 127.0.0.1:{self.port}; root {root};
    location / {{ add_header Cache-Control "no-cache"; }}
    location /hook/ {{ return 204; }} }} }}
""")
        self._spawn(["nginx", "-p", d + "/", "-c", conf, "-g", "daemon off;"], os.path.join(d, "out.log"))
        fdedge.wait_for(lambda: fdedge.port_open(self.port), 10, "static nginx listening")


if __name__ == "__main__":
    main()
