"""fdtest - what the end-to-end tests share: a migrated database in the test
cluster, the service binaries started on free loopback ports, raw gRPC calls.

Environment (set by ctest, see tests/CMakeLists.txt): FD_SOURCE_DIR,
FD_BUILD_DIR, FD_TEST_PGHOST (socket folder), FD_TEST_PGPORT.
"""
import os
import signal
import socket
import subprocess
import time
import uuid

import grpc

SOURCE = os.environ.get("FD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("FD_BUILD_DIR", os.path.join(SOURCE, "build"))
PGHOST = os.environ.get("FD_TEST_PGHOST", "")
PGPORT = os.environ.get("FD_TEST_PGPORT", "5432")

# Test-only keys (never used outside tests).
TEST_HASH_KEY = "5a" * 32      # FRONTDESK_SECRET_HASH_KEY
TEST_KEK = "c3" * 32           # FRONTDESK_KEY_ENCRYPTION_KEY
TEST_LINESD_SECRET = "linesd-test-secret-" + "7" * 24   # FRONTDESK_LINESD_SERVICE_SECRET
# argon2id at its minimum cost, so tests log in quickly (production: 2 passes, 64 MiB).
FAST_PWHASH = {"FRONTDESK_PWHASH_OPSLIMIT": "1", "FRONTDESK_PWHASH_MEMLIMIT_KIB": "8192"}

SERVICES = {
    "authd": "frontdesk.v1.AuthService",
    "billingd": "frontdesk.v1.BillingService",
    "linesd": "frontdesk.v1.LinesService",
    "routerd": "frontdesk.v1.RoutingService",
}


def binary(name):
    sub = "bench" if name.startswith("bench_") else os.path.join("services", name)
    return os.path.join(BUILD, sub, name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, db="postgres", host=None, port=None, check=True):
    """Run SQL as the cluster's superuser; returns stdout."""
    cmd = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", host or PGHOST,
           "-p", str(port or PGPORT), "-U", "postgres", "-d", db, "-c", sql]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"psql failed: {r.stderr}")
    return r.stdout


class Database:
    """A fresh database in the test cluster, migrated with `frontdesk migrate`."""

    def __init__(self, host=None, port=None):
        self.host = host or PGHOST
        self.port = str(port or PGPORT)
        self.name = "t_" + uuid.uuid4().hex[:12]
        psql(f"CREATE DATABASE {self.name} TEMPLATE template0", host=self.host, port=self.port)
        self.url = f"host={self.host} port={self.port} dbname={self.name}"
        env = dict(os.environ, FRONTDESK_ADMIN_DATABASE_URL=self.url + " user=postgres")
        r = subprocess.run([binary("frontdesk"), "migrate"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"frontdesk migrate failed:\n{r.stdout}\n{r.stderr}")

    def bootstrap(self, username="admin", password="platform-admin-pw-1", env=None):
        """Create the first platform admin with `frontdesk bootstrap`."""
        e = dict(os.environ, FRONTDESK_ADMIN_DATABASE_URL=self.url + " user=postgres",
                 FRONTDESK_BOOTSTRAP_USERNAME=username, FRONTDESK_BOOTSTRAP_PASSWORD=password,
                 **FAST_PWHASH)
        e.update(env or {})
        r = subprocess.run([binary("frontdesk"), "bootstrap"], env=e, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"frontdesk bootstrap failed:\n{r.stdout}\n{r.stderr}")
        return r

    def drop(self):
        psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", host=self.host, port=self.port,
             check=False)


class Service:
    """One service process on a free loopback port."""

    def __init__(self, name, db_url, env=None, port=None):
        self.name = name
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        svc = name.upper()
        self.env = dict(os.environ)
        self.env.update({
            "FRONTDESK_DATABASE_URL": db_url,
            f"FRONTDESK_{svc}_LISTEN": self.target,
            f"FRONTDESK_{svc}_THREADS": "4",
            f"FRONTDESK_{svc}_DB_POOL": "4",
            "FRONTDESK_SHUTDOWN_GRACE_MS": "5000",
            "FRONTDESK_SECRET_HASH_KEY": TEST_HASH_KEY,
            "FRONTDESK_KEY_ENCRYPTION_KEY": TEST_KEK,
            "FRONTDESK_LINESD_SERVICE_SECRET": TEST_LINESD_SECRET,
            **FAST_PWHASH,
        })
        self.env.update(env or {})
        self.log_path = os.path.join(BUILD, f"test-{name}-{self.port}.log")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([binary(name)], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def channel(self, **kw):
        return grpc.insecure_channel(self.target, **kw)

    def wait_serving(self, timeout=15.0, want=1):
        """Wait until Health/Check says SERVING (want=1) or NOT_SERVING (2)."""
        deadline = time.time() + timeout
        last = None
        # Wait for the port first: a channel opened before it listens backs
        # off for seconds before it tries again.
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        with self.channel() as ch:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                       + self.output())
                try:
                    r = ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1)
                    last = health_status(r)
                    if last == want:
                        return
                except grpc.RpcError as e:
                    last = e.code()
                time.sleep(0.1)
        raise TimeoutError(f"{self.name}: health never reached {want} (last: {last})\n"
                           + self.output())

    def output(self):
        """Everything the process logged (also after stop())."""
        if self.log.closed:
            with open(self.log_path) as f:
                return f.read()
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the process; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.log.close()
        return self.proc.returncode


def health_status(raw):
    """Decode a HealthCheckResponse by hand: field 1, varint."""
    if not raw:
        return 0
    assert raw[0] == 0x08, raw
    return raw[1]


def call(channel, method, payload=b"", timeout=5, metadata=None):
    """A unary call with raw bytes; returns (code name, bytes or details)."""
    try:
        r = channel.unary_unary(method)(payload, timeout=timeout, metadata=metadata)
        return "OK", r
    except grpc.RpcError as e:
        return e.code().name, e.details()


def string_field(num, data):
    """Encode one length-delimited field (raw bytes, no checks)."""
    key = bytes([(num << 3) | 2])
    n = len(data)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return key + bytes(out) + data
