"""A service's life: bad configuration refused at start-up, --print-config
without secrets, SIGTERM under load (in-flight calls complete, exit 0), and a
PostgreSQL restart under a running service (NOT_SERVING during the outage,
SERVING again within 5 s of its return, no restart of the service)."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdtest  # noqa: E402
from fdtest import call  # noqa: E402


def run(name, env, *args):
    e = dict(os.environ, FRONTDESK_SECRET_HASH_KEY=fdtest.TEST_HASH_KEY,
             FRONTDESK_KEY_ENCRYPTION_KEY=fdtest.TEST_KEK)
    e.update(env)
    return subprocess.run([fdtest.binary(name), *args], env=e, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("var,value,why", [
    ("FRONTDESK_AUTHD_THREADS", "0", "outside 1..256"),
    ("FRONTDESK_AUTHD_THREADS", "many", "not an integer"),
    ("FRONTDESK_DB_PREPARED", "perhaps", "not a boolean"),
    ("FRONTDESK_LOG_LEVEL", "chatty", "not one of"),
    ("FRONTDESK_AUTHD_LISTEN", "", "must not be empty"),
    ("FRONTDESK_AUTHD_LISTEN", "0.0.0.0:7101", "not a loopback address"),
    ("FRONTDESK_SECRET_HASH_KEY", "", "must be 64 hex digits"),
    ("FRONTDESK_SECRET_HASH_KEY", "zz" * 32, "must be 64 hex digits"),
    ("FRONTDESK_AUTH_CACHE_MS", "6000", "outside 1..5000"),
    ("FRONTDESK_DB_STATEMENT_TIMEOUT_MS", "-1", "outside 0..3600000"),
])
def test_bad_setting_stops_start_up_naming_it(var, value, why):
    r = run("authd", {var: value})
    assert r.returncode == 2, r
    assert var in r.stderr and why in r.stderr, r.stderr


def test_plaintext_off_loopback_only_when_allowed():
    r = run("authd", {"FRONTDESK_AUTHD_LISTEN": "0.0.0.0:7101", "FRONTDESK_ALLOW_PLAINTEXT": "true"},
            "--print-config")
    assert r.returncode == 0, r
    assert "FRONTDESK_ALLOW_PLAINTEXT=true" in r.stdout


def test_print_config_hides_secrets():
    r = run("billingd", {"FRONTDESK_BILLINGD_DB_PASSWORD": "hunter2",
                         "FRONTDESK_DATABASE_URL": "host=db password=s3cret dbname=f"},
            "--print-config")
    assert r.returncode == 0, r
    assert "hunter2" not in r.stdout and "s3cret" not in r.stdout
    assert "FRONTDESK_BILLINGD_DB_PASSWORD=(set)" in r.stdout
    assert "FRONTDESK_BILLINGD_LISTEN=127.0.0.1:7102" in r.stdout


def test_sigterm_during_load_completes_in_flight_calls():
    db = fdtest.Database()
    svc = fdtest.Service("linesd", db.url)
    try:
        svc.wait_serving()
        results = []
        stop = threading.Event()

        def load():
            with svc.channel() as ch:
                while not stop.is_set():
                    code, _ = call(ch, "/grpc.health.v1.Health/Check", timeout=5)
                    results.append(code)
                    if code != "OK":
                        return

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert len(results) > 50, len(results)
        svc.proc.send_signal(signal.SIGTERM)
        code = svc.proc.wait(30)
        stop.set()
        for t in threads:
            t.join()
        assert code == 0, svc.output()
        # Calls in flight at the signal completed; later ones were refused with
        # UNAVAILABLE (connection closed), never cut off half way.
        # (gRPC core answers a call that arrives on an open connection after
        # shutdown began with CANCELLED or UNAVAILABLE; neither is a cut-off reply.)
        bad = [c for c in results if c not in ("OK", "UNAVAILABLE", "CANCELLED")]
        assert not bad, bad[:5]
        assert results.count("OK") > 50
        assert "SIGTERM received" in svc.output()
    finally:
        svc.stop()
        db.drop()


def pg(action, datadir, port=None):
    args = [os.path.join(fdtest.SOURCE, "scripts", "pg.sh"), action, datadir]
    if port:
        args.append(str(port))
    subprocess.run(args, check=True, capture_output=True)


def test_postgres_restart_under_a_running_service():
    # A cluster of this test's own: the shared one must not be stopped.
    datadir = tempfile.mkdtemp(prefix="fdpg", dir="/tmp")
    os.chmod(datadir, 0o755)
    port = fdtest.free_port()
    pg("start", datadir, port)
    sock = os.path.join(datadir, "sock")
    db = fdtest.Database(host=sock, port=port)
    svc = fdtest.Service("routerd", db.url)
    try:
        svc.wait_serving()
        with svc.channel() as ch:
            pg("stop", datadir)
            t0 = time.time()
            svc.wait_serving(timeout=5, want=2)   # NOT_SERVING
            assert time.time() - t0 < 5
            # The service itself still answers (here: the credential it wants).
            assert call(ch, "/frontdesk.v1.RoutingService/GetNode")[0] == "UNAUTHENTICATED"
            pg("start", datadir, port)
            t1 = time.time()
            svc.wait_serving(timeout=5, want=1)   # SERVING again
            assert time.time() - t1 < 5
        assert svc.proc.poll() is None, "the service must not have restarted"
    finally:
        code = svc.stop()
        pg("stop", datadir)
        subprocess.run(["rm", "-rf", datadir])
    assert code == 0


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="fdtls")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=test-ca")
    for name in ("server", "client"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", p(f"{name}.key"), "-out", p(f"{name}.csr"), "-subj", f"/CN={name}")
        ext = p(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", p(f"{name}.csr"), "-CA", p("ca.pem"), "-CAkey",
                p("ca.key"), "-CAcreateserial", "-out", p(f"{name}.pem"), "-days", "2",
                "-extfile", ext)
    return p


def read(path):
    with open(path, "rb") as f:
        return f.read()


def health_over(target, creds):
    with grpc.secure_channel(target, creds) as ch:
        return call(ch, "/grpc.health.v1.Health/Check", timeout=3)[0]


def test_tls_and_mutual_tls(certs):
    db = fdtest.Database()
    tls = {"FRONTDESK_TLS_CERT": certs("server.pem"), "FRONTDESK_TLS_KEY": certs("server.key")}
    one = fdtest.Service("authd", db.url, env=tls)
    mtls = dict(tls, FRONTDESK_TLS_CLIENT_CA=certs("ca.pem"))
    two = fdtest.Service("billingd", db.url, env=mtls)
    try:
        for s in (one, two):
            deadline = time.time() + 15
            while time.time() < deadline and s.proc.poll() is None:
                time.sleep(0.2)
                if "serving on" in s.output():
                    break
        ca = read(certs("ca.pem"))
        # TLS: a client that trusts the CA gets in; plaintext does not.
        assert health_over(one.target, grpc.ssl_channel_credentials(ca)) == "OK"
        with grpc.insecure_channel(one.target) as ch:
            assert call(ch, "/grpc.health.v1.Health/Check", timeout=3)[0] == "UNAVAILABLE"
        # Mutual TLS: without a client certificate refused, with one accepted.
        assert health_over(two.target, grpc.ssl_channel_credentials(ca)) == "UNAVAILABLE"
        client = grpc.ssl_channel_credentials(ca, read(certs("client.key")),
                                              read(certs("client.pem")))
        assert health_over(two.target, client) == "OK"
        assert "mutual TLS" in two.output()
    finally:
        assert one.stop() == 0
        assert two.stop() == 0
        db.drop()


def test_missing_tls_file_stops_start_up(certs):
    r = run("routerd", {"FRONTDESK_TLS_CERT": "/nonexistent.pem",
                        "FRONTDESK_TLS_KEY": certs("server.key"),
                        "FRONTDESK_DATABASE_URL": "host=/nonexistent dbname=x"})
    assert r.returncode != 0
    assert "FRONTDESK_TLS_CERT" in r.stderr, r.stderr


def test_idle_client_connection_does_not_hold_shutdown():
    """A portal keeps its channel open between calls: SIGTERM must not wait
    the whole grace period (5 s here) for it to go."""
    db = fdtest.Database()
    try:
        svc = fdtest.Service("billingd", db.url)
        svc.wait_serving()
        ch = svc.channel()
        call(ch, "/grpc.health.v1.Health/Check")
        start = time.time()
        assert svc.stop() == 0
        took = time.time() - start
        ch.close()
        assert took < 2.5, f"stop took {took:.1f} s with an idle connection open"
    finally:
        db.drop()


def test_bootstrap_again_needs_no_password_and_changes_nothing():
    """A rerun of `frontdesk bootstrap` (up.sh after a restart) leaves an
    existing admin as it is, without asking for or checking a password: a
    short or missing one no longer stops it. A new admin still needs one."""
    db = fdtest.Database()
    try:
        db.bootstrap("admin", "platform-admin-pw-1")
        before = fdtest.psql("SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = 0 AND username = 'admin'",
                             db=db.name, host=db.host, port=db.port)
        for pw in ("short", ""):
            r = db.bootstrap("admin", pw)
            assert "already exists; unchanged" in r.stdout, r.stdout + r.stderr
        after = fdtest.psql("SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = 0 AND username = 'admin'",
                            db=db.name, host=db.host, port=db.port)
        assert before == after
        with pytest.raises(RuntimeError, match="at least 12 characters"):
            db.bootstrap("second", "short")
        e = dict(os.environ, FRONTDESK_ADMIN_DATABASE_URL=db.url + " user=postgres",
                 FRONTDESK_BOOTSTRAP_USERNAME="second", FRONTDESK_BOOTSTRAP_PASSWORD="")
        r = subprocess.run([fdtest.binary("frontdesk"), "bootstrap"], env=e, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and "FRONTDESK_BOOTSTRAP_PASSWORD" in r.stderr, r.stderr
    finally:
        db.drop()
