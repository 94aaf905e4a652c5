"""fdedge - what the HTTP edge's end-to-end tests share: nginx running the
shipped node configurations (docker/nginx/) on private loopback ports, an
ffmpeg HLS source, an ffmpeg RTMP publisher, streaming nodes registered in
routerd and kept heartbeating, and ways to play (ffprobe, live HLS segments
over urllib, curl).

    src = HlsSource(root, stream_id=5).wait_ready()          # one per module
    with Nginx(HLS_CONF, {"edged": p.edged.target, "node_id": n.id,
                          "node_secret": secret, "root": root}) as ng:
        hls_segments(f"{ng.url}/{token}/5/index.m3u8", 2)
    with Nginx(RTMP_CONF, {...}) as ng, RtmpPublisher(f"{ng.rtmp}/live/5"):
        ffprobe(f"{ng.rtmp}/live/5?fdt={token}")
    sim = NodeSim(p, t)                  # t: tenant admin, None: shared pool
    node, key = sim.add(urls={M3U8: ng.url}); sim.stop_heartbeats(node)

Every process here runs in its own process group on loopback, is stopped by
its own stop() (context manager, and atexit for any left running), and
every wait has a timeout. Logs stay readable after stop (output()).
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import fdtest  # noqa: E402

NGINX_DIR = os.path.join(fdtest.SOURCE, "docker", "nginx")
HLS_CONF = os.path.join(NGINX_DIR, "hls-node.conf")
RTMP_CONF = os.path.join(NGINX_DIR, "rtmp-node.conf")

# Output formats as common.proto numbers them (fdstack.C needs the protos).
TS, M3U8, RTMP = 1, 2, 3

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
CURL = shutil.which("curl") or "/usr/bin/curl"

_running = set()
_running_lock = threading.Lock()


def _stop_all():
    with _running_lock:
        left = list(_running)
    for p in left:
        try:
            p.kill()
        except Exception:  # noqa: BLE001
            pass


atexit.register(_stop_all)


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred until it returns a true value (returned); raises
    TimeoutError naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _group_running(pgid):
    """Whether a process of group pgid runs (Linux /proc; zombies excluded)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class Proc:
    """One child process in its own process group, its output in a file."""

    name = "process"

    def _spawn(self, argv, log_path, env=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "w+b")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        with _running_lock:
            _running.add(self)

    def alive(self):
        return self.proc.poll() is None

    def _must_live(self):
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {' '.join(self.argv)}\n"
                               + self.output()[-4000:])

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_group_gone(self, timeout=3):
        """Until no process of the group runs (nginx's workers outlive a
        killed master for a moment, holding the listening socket; as
        orphans they stay zombies until init reaps them, which may take
        seconds here: zombies do not count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_running(self.proc.pid):
                return True
            time.sleep(0.005)
        return False

    def stop(self, timeout=10):
        """SIGTERM to the group (nginx: fast shutdown), SIGKILL after
        timeout; returns the exit status."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(5)
        self._signal_group(signal.SIGKILL)   # anything the leader left behind
        self._wait_group_gone()
        self._done()
        return self.proc.returncode

    def kill(self):
        """SIGKILL to the whole group at once (a node dying: no goodbye)."""
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._wait_group_gone()
        self._done()
        return self.proc.returncode

    def _done(self):
        with _running_lock:
            _running.discard(self)
        if not self.log.closed:
            self.log.close()

    def output(self):
        """Everything the process wrote (also after stop)."""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --- nginx -------------------------------------------------------------------

def hls_server_conf(port, root, node_id, node_secret, access_log):
    """hls-node.server.conf for a test node (mirrors the .example)."""
    return (f"listen 127.0.0.1:{port};\n"
            f"server_name _;\n"
            f"root {root};\n"
            f"set $fd_node_id {int(node_id)};\n"
            f"set $fd_node_secret {node_secret};\n"
            f"access_log {access_log};\n")


def rtmp_server_conf(port, edged, node_id, node_secret):
    """rtmp-node.server.conf for a test node (mirrors the .example)."""
    base = f"http://{edged}/hook/rtmp/{int(node_id)}/{node_secret}"
    return (f"listen 127.0.0.1:{port};\n"
            f"on_play      {base}/play;\n"
            f"on_update    {base}/update;\n"
            f"on_play_done {base}/done;\n")


class Nginx(Proc):
    """nginx running a shipped config (HLS_CONF or RTMP_CONF) as it is.

    params: edged ("127.0.0.1:port" of edged or a stand-in), node_id,
    node_secret, and for HLS root (the HLS directory), optional port (a
    free one by default), log_level (default info), update_timeout (RTMP:
    notify_update_timeout, written into the per-node file; default the
    shipped 30 s). A temporary prefix dir gets a symlink to the shipped file
    and the per-node include(s) beside it: nginx resolves a relative include
    against the -c file's directory, so -c must name the link, not the
    source tree (where the tests must write nothing). Then
        nginx -p DIR -c DIR/<shipped name> -g 'daemon off; error_log DIR/error.log LEVEL;'
    url (HLS, http://127.0.0.1:port) or rtmp (RTMP, rtmp://127.0.0.1:port)
    is the node's base; base_url is the one to register (HLS: url; RTMP:
    rtmp + "/live")."""

    def __init__(self, conf, params, start=True, timeout=10):
        self.name = "nginx " + os.path.basename(conf)
        self.conf = os.path.abspath(conf)
        self.params = dict(params)
        self.port = int(self.params.get("port") or fdtest.free_port())
        self.dir = tempfile.mkdtemp(prefix="fdedge-nginx-")
        # Workers run as nobody when the tests run as root: let them in.
        os.chmod(self.dir, 0o755)
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")
        self.rtmp_mode = os.path.basename(self.conf).startswith("rtmp")
        self.link = os.path.join(self.dir, os.path.basename(self.conf))
        os.symlink(self.conf, self.link)
        self.write_node_files()
        if self.rtmp_mode:
            self.url = None
            self.rtmp = f"rtmp://127.0.0.1:{self.port}"
            self.base_url = self.rtmp + "/live"
        else:
            self.url = f"http://127.0.0.1:{self.port}"
            self.rtmp = None
            self.base_url = self.url
        if start:
            self.start(timeout)

    def write_node_files(self):
        p = self.params
        if self.rtmp_mode:
            text = rtmp_server_conf(self.port, p["edged"], p["node_id"], p["node_secret"])
            if p.get("update_timeout"):
                text += f"notify_update_timeout {p['update_timeout']};\n"
            self._write("rtmp-node.server.conf", text)
        else:
            self._write("hls-node.server.conf",
                        hls_server_conf(self.port, p["root"], p["node_id"], p["node_secret"], self.access_log))
            self._write("hls-node.edged.conf", f"server {p['edged']};\n")

    def _write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def command(self):
        level = self.params.get("log_level", "info")
        return [NGINX, "-p", self.dir + "/", "-c", self.link,
                "-g", f"daemon off; error_log {self.error_log} {level};"]

    def test_config(self):
        """nginx -t on the same files; returns (ok, output)."""
        r = subprocess.run(self.command() + ["-t"], capture_output=True, text=True, timeout=20)
        return r.returncode == 0, r.stdout + r.stderr

    def start(self, timeout=10):
        ok, out = self.test_config()
        if not ok:
            raise RuntimeError(f"{self.name}: nginx -t failed:\n{out}")
        self._spawn(self.command(), os.path.join(self.dir, "nginx.out"))

        def up():
            self._must_live()
            return port_open(self.port)
        wait_for(up, timeout, f"{self.name} listening on {self.port}")
        self.ready_after = time.monotonic() - self.started
        return self

    def errors(self):
        """The error log (notices and above at the default log_level)."""
        return _read(self.error_log)

    def access(self):
        """HLS: the access log, one line per request."""
        return _read(self.access_log)

    def output(self):
        return super().output() + _read(self.error_log)

    def cleanup(self):
        """Remove the prefix dir (after stop)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# --- ffmpeg sources ------------------------------------------------------------

def _testsrc(size, rate):
    return ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", str(rate), "-keyint_min", str(rate), "-sc_threshold", "0"]


class HlsSource(Proc):
    """ffmpeg writing a live HLS stream of a test pattern to
    {root}/{stream_id}/index.m3u8 and seg{N}.ts (1 s segments, 6 listed,
    old ones deleted). One per test module is the intent."""

    name = "ffmpeg hls"

    def __init__(self, root, stream_id, size="160x90", rate=10, log_dir=None):
        self.root = root
        self.stream_id = stream_id
        self.dir = os.path.join(root, str(stream_id))
        os.makedirs(self.dir, exist_ok=True)
        for d in (root, self.dir):
            os.chmod(d, 0o755)   # nginx's workers may run as nobody
        self.playlist = os.path.join(self.dir, "index.m3u8")
        argv = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", *_testsrc(size, rate),
                "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
                "-hls_segment_filename", os.path.join(self.dir, "seg%d.ts"), self.playlist]
        self._spawn(argv, os.path.join(log_dir or root, f"ffmpeg-hls-{stream_id}.log"))

    def segments(self):
        """The segment names the playlist lists now."""
        try:
            with open(self.playlist) as f:
                return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        except FileNotFoundError:
            return []

    def wait_ready(self, segments=2, timeout=20):
        def ready():
            self._must_live()
            return len(self.segments()) >= segments
        wait_for(ready, timeout, f"{self.playlist} with {segments} segments")
        self.ready_after = time.monotonic() - self.started
        return self


class RtmpPublisher(Proc):
    """ffmpeg -re pushing a test pattern as FLV to rtmp_url (nginx-rtmp's
    application live, from loopback)."""

    name = "ffmpeg rtmp"

    def __init__(self, rtmp_url, size="160x90", rate=10, log_dir=None):
        self.url = rtmp_url
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="fdedge-pub-")
        self.progress = os.path.join(self.log_dir, "progress.txt")
        argv = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", *_testsrc(size, rate),
                "-progress", self.progress, "-stats_period", "0.2", "-f", "flv", rtmp_url]
        self._spawn(argv, os.path.join(self.log_dir, "ffmpeg-rtmp.log"))

    def frames(self):
        """Frames sent so far (ffmpeg's -progress)."""
        n = re.findall(r"^frame=(\d+)", _read(self.progress), re.M)
        return int(n[-1]) if n else 0

    def wait_publishing(self, frames=10, timeout=15):
        """Until ffmpeg has sent `frames` frames (the publish was accepted)."""
        def sent():
            self._must_live()
            return self.frames() >= frames
        wait_for(sent, timeout, f"publishing to {self.url}")
        self.ready_after = time.monotonic() - self.started
        return self


# --- streaming nodes in routerd ----------------------------------------------

class NodeSim:
    """Nodes registered in routerd through the Stack's RoutingService (by
    tenant admin `owner`, or the platform admin into the shared pool when
    owner is None), heartbeating every `period` s from a thread until
    stop_heartbeats(node) (routerd then sees it DOWN) or close()."""

    def __init__(self, stack, owner=None, period=0.1, replica=0):
        import fdstack  # needs the generated protos; only here
        self.stack = stack
        self.owner = owner
        self.R = fdstack.R
        self.beater = fdstack.Beater(stack, period, replica)
        self.nodes = {}

    def add(self, urls, name=None, region="eu-west", load=None, **fields):
        """Register a node; urls: {format: base_url} (TS, M3U8, RTMP) or
        (format, base_url) pairs. Starts its heartbeats; returns (Node, key)."""
        pairs = list(urls.items()) if isinstance(urls, dict) else list(urls)
        node, key = self.stack.node(self.owner, name=name, region=region, urls=pairs, **fields)
        self.nodes[node.id] = (node, key)
        self.beater.add(node, key, load or self.R.NodeLoad())
        return node, key

    def stop_heartbeats(self, node):
        return self.beater.pause(node)

    def resume_heartbeats(self, node):
        return self.beater.resume(node)

    def set_load(self, node, load):
        return self.beater.set(node, load)

    def errors(self):
        return list(self.beater.errors)

    def close(self):
        self.beater.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- playing ---------------------------------------------------------------------

def ffprobe(url, timeout=15, analyze_s=1.0, extra=()):
    """ffprobe's -show_streams JSON of url (a dict with "streams"); raises
    RuntimeError with ffprobe's output when it cannot read the stream.
    analyze_s: how much of the stream ffprobe reads first (its default, 5 s,
    makes an RTMP probe take 6 s; 1 s takes 2)."""
    argv = [FFPROBE, "-hide_banner", "-v", "error", "-rw_timeout", str(int(timeout * 1e6)),
            "-analyzeduration", str(int(analyze_s * 1e6)), "-print_format", "json", "-show_streams", *extra, url]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"ffprobe {url}: no answer within {timeout} s") from e
    if r.returncode != 0:
        raise RuntimeError(f"ffprobe {url} exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def http_get(url, timeout=5, follow=True, headers=None):
    """GET url (following redirects unless follow=False). Returns
    ns(status, url (the final one), headers, body, redirects (the chain of
    URLs before the final one)); an HTTP error status is returned, not
    raised."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    chain = []

    class Track(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, hdrs, newurl):
            chain.append(req.full_url)
            return super().redirect_request(req, fp, code, msg, hdrs, newurl)

    opener = urllib.request.build_opener(Track() if follow else _NoRedirect())
    try:
        with opener.open(req, timeout=timeout) as r:
            return types.SimpleNamespace(status=r.status, url=r.geturl(), headers=dict(r.headers.items()),
                                         body=r.read(), redirects=chain)
    except urllib.error.HTTPError as e:
        return types.SimpleNamespace(status=e.code, url=e.geturl(), headers=dict(e.headers.items()),
                                     body=e.read(), redirects=chain)


def playlist_entries(text):
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def hls_segments(url, n, timeout=20, http_timeout=5):
    """Plays url as a live HLS player would: GET it (following redirects),
    then keep re-reading the playlist at its final URL and fetch each new
    segment (relative URLs resolved against it) until n were fetched.
    Returns ns(playlist_url, playlist_status, segments=[ns(url, status,
    size)]): stops early, with what it has, at the first playlist or segment
    answered other than 200 (a refused viewer)."""
    first = http_get(url, timeout=http_timeout)
    out = types.SimpleNamespace(playlist_url=first.url, playlist_status=first.status, redirects=first.redirects,
                                segments=[])
    if first.status != 200:
        return out
    seen = set()
    pl = first
    deadline = time.monotonic() + timeout
    while True:
        for entry in playlist_entries(pl.body.decode("utf-8", "replace")):
            seg_url = urllib.parse.urljoin(out.playlist_url, entry)
            if seg_url in seen:
                continue
            seen.add(seg_url)
            r = http_get(seg_url, timeout=http_timeout)
            out.segments.append(types.SimpleNamespace(url=r.url, status=r.status, size=len(r.body)))
            if r.status != 200 or len(out.segments) >= n:
                return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}: {len(out.segments)} of {n} segments within {timeout} s")
        time.sleep(0.3)
        pl = http_get(out.playlist_url, timeout=http_timeout)
        out.playlist_status = pl.status
        if pl.status != 200:
            return out


def curl(url, *extra, follow=False, timeout=10):
    """curl -s url (with extra arguments); returns ns(status, headers (last
    response, lower-case names), body (bytes), url (effective), redirect_url,
    rc (curl's exit code))."""
    fd, hfile = tempfile.mkstemp(prefix="fdedge-curl-")
    os.close(fd)
    try:
        argv = [CURL, "-s", "-S", "--max-time", str(timeout), "-D", hfile, "-o", "-",
                "-w", "\n%{http_code} %{url_effective} %{redirect_url}", *(["-L"] if follow else []), *extra, url]
        r = subprocess.run(argv, capture_output=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)
        body, _, tail = r.stdout.rpartition(b"\n")
        parts = tail.decode().split(" ")
        hdrs = {}
        raw = _read(hfile)
        last = raw.strip().split("\r\n\r\n")[-1] if raw else ""
        for line in last.split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        return types.SimpleNamespace(status=int(parts[0]) if parts and parts[0].isdigit() else 0, headers=hdrs,
                                     body=body, url=parts[1] if len(parts) > 1 else "",
                                     redirect_url=parts[2] if len(parts) > 2 else "", rc=r.returncode,
                                     stderr=r.stderr.decode("utf-8", "replace"))
    finally:
        os.unlink(hfile)
