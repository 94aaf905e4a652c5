"""scripts/up.sh, the quick start, run as `nohup scripts/up.sh &` is: through
nohup from a non-interactive shell (which starts it with SIGINT ignored), on
private ports and a private data folder, with the build folder ctest is using
(FRONTDESK_UP_NO_BUILD=1: nothing is rebuilt).

INT and TERM each stop every service and its PostgreSQL within a bound, exit
0; a restart after the demo admin changed its password comes up and says so;
a restart after secrets.env was edited comes up (service secrets made anew,
a changed password reported) or, where a new key would leave stored data
unreadable, is refused with what to do, with nothing started or changed.
The tests run in order on one data folder: each start finds what the ones
before left.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import grpc
import pytest

import fdapi
from fdtest import BUILD, FAST_PWHASH, SOURCE, free_port, health_status

UP = os.path.join(SOURCE, "scripts", "up.sh")
PG_SH = os.path.join(SOURCE, "scripts", "pg.sh")
SERVICES = ["authd", "billingd", "linesd", "routerd"]   # gRPC; and edged, the HTTP edge
START_BOUND = 60     # s: PostgreSQL (initdb the first time), migrations, five services, the demo set-up
STOP_BOUND = 20      # s: services drain (grace 3 s, killed 5 s later), then PostgreSQL's fast stop


def sig_ignored(pid, sig):
    """Whether process `pid` ignores `sig` (SigIgn in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(mask >> (sig - 1) & 1)


def gone(pid):
    """No such process any more (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def serving(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            return health_status(ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1)) == 1
        except grpc.RpcError:
            return False


def edge_healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Platform:
    """One data folder and one set of ports; start() runs up.sh on them."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="fd-up-")
        self.secrets = os.path.join(self.data, "secrets.env")
        self.pg = os.path.join(self.data, "pg")
        self.ports = {s: free_port() for s in SERVICES}
        self.edged_port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not re.match(r"FRONTDESK_(.*DATABASE_URL|.*_TARGET|.*_LISTEN)$", k)}
        self.env.update({
            "FRONTDESK_DATA_DIR": self.data,
            "FRONTDESK_PG_PORT": str(free_port()),
            "FRONTDESK_BUILD_DIR": BUILD,
            "FRONTDESK_UP_NO_BUILD": "1",
            "FRONTDESK_SHUTDOWN_GRACE_MS": "3000",
            **FAST_PWHASH,
            **{f"FRONTDESK_{s.upper()}_LISTEN": f"127.0.0.1:{p}" for s, p in self.ports.items()},
            "FRONTDESK_EDGED_LISTEN": f"127.0.0.1:{self.edged_port}",
        })
        self.proc = None
        self.runs = 0

    def start(self):
        """`nohup up.sh &` from sh -c; the shell waits for it, so its exit
        status is up.sh's. Returns up.sh's pid."""
        self.cleanup(keep_data=True)   # a test that failed half-way left it running
        self.runs += 1
        self.log = os.path.join(self.data, f"up-{self.runs}.log")
        self.proc = subprocess.Popen(["/bin/sh", "-c", 'nohup "$0" >"$1" 2>&1 & echo $!; wait $!', UP, self.log],
                                     env=self.env, stdout=subprocess.PIPE, text=True)
        self.pid = int(self.proc.stdout.readline())
        return self.pid

    def output(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:   # the shell has not opened it yet
            return ""

    def wait_up(self):
        """Until up.sh says it is up and every service answers health; returns
        the pids of what it runs (services and the postmaster)."""
        deadline = time.time() + START_BOUND
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"up.sh exited with {self.proc.returncode}:\n{self.output()}")
            if "frontdesk is up" in self.output() and all(serving(p) for p in self.ports.values()) and \
                    edge_healthy(self.edged_port):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"not up after {START_BOUND} s:\n{self.output()}")
        kids = children(self.pid)
        assert len(kids) == len(SERVICES) + 1, (kids, self.output())
        with open(os.path.join(self.pg, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        assert not gone(postmaster)
        return kids + [postmaster]

    def stop(self, sig, pids):
        """Sends `sig` to up.sh; checks everything stops within the bound.
        Returns (exit status, seconds taken)."""
        t0 = time.time()
        os.kill(self.pid, sig)
        try:
            rc = self.proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up.sh still running {STOP_BOUND} s after {sig.name}:\n{self.output()}")
        took = time.time() - t0
        self.assert_nothing_runs(pids)
        return rc, took

    def assert_nothing_runs(self, pids=()):
        left = [p for p in pids if not gone(p)]
        assert not left, f"still running: {left}\n{self.output()}"
        assert gone(self.pid)
        # Nothing started from this data folder (PostgreSQL's command line names it).
        r = subprocess.run(["pgrep", "-f", self.data], capture_output=True, text=True)
        assert r.returncode == 1, f"still running: {r.stdout}"
        assert subprocess.run([PG_SH, "status", self.pg]).returncode == 3
        assert not [s for s, p in self.ports.items() if listening(p)]
        assert not listening(self.edged_port)

    def secret(self, name):
        """The value secrets.env gives `name` (its last line, as sourcing does)."""
        with open(self.secrets) as f:
            values = [line.split("=", 1)[1].strip() for line in f if line.startswith(name + "=")]
        return values[-1] if values else None

    def edit_secrets(self, drop=(), set_=None):
        with open(self.secrets) as f:
            lines = [line for line in f if line.split("=", 1)[0] not in drop]
        for k, v in (set_ or {}).items():
            lines = [f"{k}={v}\n" if line.startswith(k + "=") else line for line in lines]
        with open(self.secrets, "w") as f:
            f.writelines(lines)

    def cleanup(self, keep_data=False):
        if self.proc and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        if keep_data:
            return
        subprocess.run([PG_SH, "stop", self.pg], check=False)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def platform():
    p = Platform()
    yield p
    p.cleanup()


def channel(platform, service="authd"):
    return grpc.insecure_channel(f"127.0.0.1:{platform.ports[service]}")


NEW_DEMO_PASSWORD = "demo-admin-changed-pw-1"


def test_the_harness_starts_up_sh_with_sigint_ignored():
    """What `nohup cmd &` in a non-interactive shell hands its command: SIGINT
    ignored (today's bug came from it), SIGTERM not."""
    out = subprocess.run(["/bin/sh", "-c", 'nohup /bin/sh -c "grep SigIgn /proc/\\$\\$/status" 2>/dev/null & wait'],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout
    mask = int(out.split()[1], 16)
    assert mask >> (signal.SIGINT - 1) & 1 and not mask >> (signal.SIGTERM - 1) & 1, out


def test_int_stops_everything_postgresql_included(platform):
    platform.start()
    pids = platform.wait_up()
    out = platform.output()
    assert "demo tenant 1 (slug demo) created" in out, out
    # Roles by name, not enum numbers.
    assert "(role platform_admin," in out and "(role tenant_admin," in out, out
    assert not re.search(r"role \d", out), out
    assert os.stat(platform.secrets).st_mode & 0o777 == 0o600
    # The player URL and credentials a newcomer pastes into a player work
    # as printed: the login payload, and the playlist of the demo's channels.
    m = re.search(r"a player \(Xtream codes login\): server (\S+) username (\S+) password (\S+)", out)
    assert m, out
    server, user, pw = m.groups()
    assert server == f"http://127.0.0.1:{platform.edged_port}/t/demo", out
    with urllib.request.urlopen(f"{server}/player_api.php?username={user}&password={pw}", timeout=5) as r:
        info = json.load(r)
    assert info["user_info"]["auth"] == 1 and info["user_info"]["status"] == "Active", info
    playlist = re.search(r"an M3U playlist: (\S+)", out).group(1)
    with urllib.request.urlopen(playlist, timeout=5) as r:
        body = r.read().decode()
    assert body.startswith("#EXTM3U") and body.count("#EXTINF") == 3, body
    assert all(name in body for name in ("Demo News", "Demo Sports", "Demo Movies")), body
    # The demo admin changes its own password (as a portal would).
    old = platform.secret("DEMO_ADMIN_PASSWORD")
    with channel(platform) as ch:
        auth = fdapi.Auth(ch)
        me = auth.Login(tenant_slug="demo", username="demo-admin", password=old)
        req = {"reseller_id": 0, "new_password": NEW_DEMO_PASSWORD}
        if "current_password" in fdapi.auth_pb2.UpdateResellerRequest.DESCRIPTOR.fields_by_name:
            req["current_password"] = old
        auth.with_token(me.access_token).UpdateReseller(**req)
        auth.Login(tenant_slug="demo", username="demo-admin", password=NEW_DEMO_PASSWORD)
    rc, took = platform.stop(signal.SIGINT, pids)
    print(f"INT: everything stopped in {took:.1f} s")
    assert rc == 0, platform.output()
    assert "frontdesk stopped" in platform.output()


def test_restart_after_the_demo_password_changed_then_term(platform):
    before = open(platform.secrets).read()
    platform.start()
    pids = platform.wait_up()
    out = platform.output()
    assert re.search(r"demo tenant 1 \(slug demo\) exists \(active\)", out), out
    assert re.search(r"demo admin demo-admin: the password in secrets.env \(DEMO_ADMIN_PASSWORD\) "
                     r"does not log in: changed since.*not printed", out), out
    assert "platform admin admin logs in" in out, out
    assert open(platform.secrets).read() == before   # nothing to make
    rc, took = platform.stop(signal.SIGTERM, pids)
    print(f"TERM: everything stopped in {took:.1f} s")
    assert rc == 0, platform.output()


def test_restart_after_secrets_edited_comes_up(platform):
    """A service secret line removed (both are made anew, nothing stores them
    but the file), the platform admin's password edited (the account keeps
    its own: reported), the demo admin's written down as it now is."""
    platform.edit_secrets(drop={"FRONTDESK_SERVICE_SECRETS"},
                          set_={"FRONTDESK_BOOTSTRAP_PASSWORD": "edited-by-hand-pw-12",
                                "DEMO_ADMIN_PASSWORD": NEW_DEMO_PASSWORD})
    old_linesd = platform.secret("FRONTDESK_LINESD_SERVICE_SECRET")
    platform.start()
    pids = platform.wait_up()
    out = platform.output()
    assert "service secrets (FRONTDESK_LINESD_SERVICE_SECRET, FRONTDESK_SERVICE_SECRETS) made (new)" in out, out
    assert re.search(r"platform admin admin: the password in secrets.env \(FRONTDESK_BOOTSTRAP_PASSWORD\) "
                     r"does not log in", out), out
    assert "demo tenant: not checked" in out, out
    assert "demo admin demo-admin logs in" in out and "(role tenant_admin," in out, out
    new_linesd = platform.secret("FRONTDESK_LINESD_SERVICE_SECRET")
    assert new_linesd and new_linesd != old_linesd
    assert f"linesd={new_linesd}," in platform.secret("FRONTDESK_SERVICE_SECRETS")
    with channel(platform) as ch:
        auth = fdapi.Auth(ch)
        assert auth.IssueServiceToken(service_name="linesd", secret=new_linesd, audience="billingd").token
        assert fdapi.code_of(auth.IssueServiceToken, service_name="linesd",
                             secret=old_linesd, audience="billingd") == "UNAUTHENTICATED"
    rc, _ = platform.stop(signal.SIGINT, pids)
    assert rc == 0, platform.output()


@pytest.mark.parametrize("edit,var", [
    ({"set_": {"FRONTDESK_KEY_ENCRYPTION_KEY": "d4" * 32}}, "FRONTDESK_KEY_ENCRYPTION_KEY"),
    ({"drop": {"FRONTDESK_SECRET_HASH_KEY"}}, "FRONTDESK_SECRET_HASH_KEY"),
])
def test_a_key_the_database_was_not_made_with_is_refused(platform, edit, var):
    """A new key would leave what the database holds unreadable (sealed
    signing keys and line passwords; API key, token and line look-ups):
    refused before anything starts, with what to do; the file is untouched."""
    good = open(platform.secrets).read()
    try:
        platform.edit_secrets(**edit)
        edited = open(platform.secrets).read()
        platform.start()
        try:
            rc = platform.proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up.sh neither refused nor stopped:\n{platform.output()}")
        out = platform.output()
        assert rc == 1, out
        assert var in out and "starting would be unsafe" in out, out
        assert f"put the old line back in {platform.secrets}" in out, out
        assert f"remove {platform.pg}" in out, out
        assert open(platform.secrets).read() == edited
        platform.assert_nothing_runs()
    finally:
        with open(platform.secrets, "w") as f:
            f.write(good)
