"""fdstack - the whole platform for end-to-end tests of linesd and routerd:
one migrated database, a platform admin, authd, billingd, zero or more
routerd replicas and one or more linesd replicas on loopback, and helpers to
make tenants, resellers, tokens, credits and streaming nodes through the real
API.

    p = Stack(linesd_replicas=2)
    t = p.tenant()                      # tenant admin: t.lines, t.bill, t.auth
    r = p.reseller(t)                   # a reseller of it, with credits minted
    edge = p.edge()                     # Lines client with the edge's service token
    ...
    p.close()

    p = Stack(routerd_replicas=1, edged=True)   # or edged_env={...}: the HTTP edge
    p.edge_url, p.edged_signing_keys            # http://127.0.0.1:port, "1:<hex>"

    p = Stack(linesd_replicas=0, routerd_replicas=2, routerd_env={...})
    node, key = p.node(t, region="eu-west")   # t's node; p.node(None) = shared pool
    p.node_client(key).Heartbeat(load=...)    # the node itself (node key)
    fdapi.Routing(p.rch[0], p.route_token()).Route(tenant_id=t.tenant)
"""
import http.client
import os
import secrets
import sys
import threading
import time
import types
import uuid

import grpc

sys.path.insert(0, os.path.dirname(__file__))
import fdtest  # noqa: E402
import fdapi  # noqa: E402
from fdapi import Auth, Billing, Lines, Routing, scope  # noqa: E402

A = fdapi.auth_pb2
B = fdapi.billing_pb2
L = fdapi.lines_pb2
R = fdapi.routing_pb2
C = fdapi.common_pb2

PLATFORM_USER = "admin"
PLATFORM_PW = "platform-admin-pw-1"
LINESD_SECRET = "linesd-secret-" + uuid.uuid4().hex
EDGED_SECRET = "edged-secret-" + uuid.uuid4().hex
CACHE_MS = 1000

SUB = A.RESELLER_PERMISSION_CREATE_SUBRESELLERS
TRIALS = A.RESELLER_PERMISSION_CREATE_TRIALS


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ikey():
    return "idem-" + uuid.uuid4().hex


def ns(**kw):
    return types.SimpleNamespace(**kw)


class Stack:
    def __init__(self, linesd_replicas=1, linesd_env=None, authd_env=None, routerd_replicas=0,
                 routerd_env=None, edged=False, edged_env=None):
        want_edged = edged or edged_env is not None
        if want_edged:
            require_edged()
        self.db = fdtest.Database()
        self.procs = []
        self.channels = []
        self.linesd = []
        self.lch = []
        self.routerd = []
        self.rch = []
        self.linesd_env = dict(linesd_env or {})
        self.routerd_env = dict(routerd_env or {})
        self.edged = None
        self.edge_url = None
        self.edged_signing_keys = "1:" + secrets.token_hex(32)
        self.edged_env = dict(edged_env or {})
        try:
            self.db.bootstrap(PLATFORM_USER, PLATFORM_PW)
            self.authd = self.start("authd", {
                "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
                "FRONTDESK_SERVICE_SECRETS": f"linesd={LINESD_SECRET},edged={EDGED_SECRET}",
                "FRONTDESK_LOGIN_FAILURES_PER_SOURCE": "5000",
                **(authd_env or {})})
            self.billingd = self.start("billingd", {"FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS)})
            self.ach = self.channel(self.authd)
            self.bch = self.channel(self.billingd)
            # routerd before linesd: linesd is told the first replica's address.
            for _ in range(routerd_replicas):
                self.add_routerd()
            for _ in range(linesd_replicas):
                self.add_linesd()
            if want_edged:
                self.start_edged(want_healthy=bool(self.linesd))
            self.anon = Auth(self.ach)
            self.pa = self.person(self.anon.Login(tenant_slug="platform", username=PLATFORM_USER,
                                                  password=PLATFORM_PW))
        except Exception:
            self.close()
            raise

    # --- processes --------------------------------------------------------

    def start(self, name, env, port=None):
        s = fdtest.Service(name, self.db.url, env=env, port=port)
        self.procs.append(s)
        s.wait_serving()
        return s

    def linesd_environment(self, extra=None):
        return {
            "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
            "FRONTDESK_LINESD_SERVICE_SECRET": LINESD_SECRET,
            "FRONTDESK_AUTHD_TARGET": self.authd.target,
            "FRONTDESK_BILLINGD_TARGET": self.billingd.target,
            "FRONTDESK_LINESD_THREADS": "8",
            "FRONTDESK_LINESD_DB_POOL": "8",
            **({"FRONTDESK_ROUTERD_TARGET": self.routerd[0].target} if self.routerd else {}),
            **self.linesd_env,
            **(extra or {}),
        }

    def add_linesd(self, extra_env=None, port=None):
        """Start one more linesd replica; returns its fdtest.Service."""
        s = self.start("linesd", self.linesd_environment(extra_env), port=port)
        self.linesd.append(s)
        self.lch.append(self.channel(s))
        return s

    def replace_linesd(self, i, extra_env=None):
        """Start replica i again on the same port (after it stopped or was
        killed), with extra_env; its channels reconnect by themselves."""
        old = self.linesd[i]
        if old.proc.poll() is None:
            old.stop()
        else:
            old.log.close()
        s = self.start("linesd", self.linesd_environment(extra_env), port=old.port)
        self.linesd[i] = s
        return s

    def routerd_environment(self, extra=None):
        return {
            "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
            **self.routerd_env,
            **(extra or {}),
        }

    def add_routerd(self, extra_env=None, port=None):
        """Start one more routerd replica; returns its fdtest.Service."""
        s = self.start("routerd", self.routerd_environment(extra_env), port=port)
        self.routerd.append(s)
        self.rch.append(self.channel(s))
        return s

    def replace_routerd(self, i, extra_env=None):
        """Start routerd replica i again on the same port (after it stopped or
        was killed), with extra_env; its channels reconnect by themselves."""
        old = self.routerd[i]
        if old.proc.poll() is None:
            old.stop()
        else:
            old.log.close()
        s = self.start("routerd", self.routerd_environment(extra_env), port=old.port)
        self.routerd[i] = s
        return s

    def edged_environment(self, extra=None):
        env = {
            "FRONTDESK_EDGED_SERVICE_SECRET": EDGED_SECRET,
            "FRONTDESK_AUTHD_TARGET": self.authd.target,
            "FRONTDESK_EDGED_SIGNING_KEYS": self.edged_signing_keys,
            "FRONTDESK_PLATFORM_HOSTS": "localhost",
            **self.edged_env,
            **(extra or {}),
        }
        if self.linesd:
            env.setdefault("FRONTDESK_LINESD_TARGET", self.linesd[0].target)
        return env

    def start_edged(self, extra_env=None, port=None, want_healthy=True):
        """Start edged (HTTP, FRONTDESK_EDGED_LISTEN on a free loopback port;
        linesd: the first replica); returns its EdgedService. One edged at
        a time: after it stopped or was killed, replace_edged. want_healthy:
        wait for /healthz 200 (linesd reached), else for any answer."""
        require_edged()
        if self.edged is not None and self.edged.proc.poll() is None:
            raise RuntimeError("edged already runs: stop it first")
        s = EdgedService(self.db.url, self.edged_environment(extra_env), port=port)
        self.procs.append(s)
        s.wait_serving(want_healthy=want_healthy)
        self.edged = s
        self.edge_url = s.url
        return s

    def replace_edged(self, extra_env=None):
        """Start edged again on the same port (after it stopped or was
        killed), with extra_env."""
        old = self.edged
        if old.proc.poll() is None:
            old.stop()
        else:
            old.log.close()
        self.procs.remove(old)   # close() reports the new one's exit status
        return self.start_edged(extra_env, port=old.port)

    def channel(self, svc):
        ch = svc.channel()
        self.channels.append(ch)
        return ch

    def close(self):
        for ch in self.channels:
            ch.close()
        codes = {}
        for s in reversed(self.procs):
            try:
                codes[s.name + str(s.port)] = s.stop()
            except Exception as e:  # noqa: BLE001
                codes[s.name + str(s.port)] = repr(e)
        self.db.drop()
        return codes

    # --- people and services ----------------------------------------------

    def person(self, login, replica=0):
        t = login.access_token
        return ns(token=t, login=login, caller=login.caller, account=login.caller.account_id,
                  auth=Auth(self.ach, t), bill=Billing(self.bch, t),
                  lines=Lines(self.lch[replica], t) if self.lch else None,
                  at=lambda i, _t=t: Lines(self.lch[i], _t))

    def tenant(self):
        """A new tenant; returns its admin (id, tenant, slug, lines, bill, auth)."""
        slug = uniq("t")
        pw = "boss-pw-" + uuid.uuid4().hex
        r = self.pa.auth.CreateTenant(slug=slug, name=f"Tenant {slug}", admin_username="boss",
                                      admin_password=pw, admin_display_name="The Boss")
        p = self.person(self.anon.Login(tenant_slug=slug, username="boss", password=pw))
        p.id = r.admin.id
        p.tenant = r.tenant.id
        p.slug = slug
        return p

    def reseller(self, t, creator=None, parent_id=0, perms=(SUB, TRIALS), credits=0):
        """A reseller of tenant t (made by `creator`, default t's admin), with
        `credits` minted to it by t's admin."""
        username = uniq("r")
        pw = "res-pw-" + uuid.uuid4().hex
        r = (creator or t).auth.CreateReseller(parent_id=parent_id, username=username, password=pw,
                                               display_name=username, permissions=list(perms))
        p = self.person(self.anon.Login(tenant_slug=t.slug, username=username, password=pw))
        p.id = r.reseller.id
        p.tenant = t.tenant
        p.username = username
        p.pw = pw
        if credits:
            self.mint(t, p.id, credits)
        return p

    def mint(self, t, reseller_id, amount):
        return t.bill.MintCredits(reseller_id=reseller_id, amount=amount, idempotency_key=ikey())

    def balance(self, who, reseller_id=0):
        return who.bill.GetBalance(reseller_id=reseller_id).account.balance

    def service_token(self, service="edged", audience="linesd"):
        secret = EDGED_SECRET if service == "edged" else LINESD_SECRET
        return self.anon.IssueServiceToken(service_name=service, secret=secret, audience=audience).token

    def route_token(self):
        """linesd's service token for routerd (audience routerd: route, nodes_read)."""
        return self.service_token("linesd", "routerd")

    def router(self, replica=0):
        """A RoutingService client holding linesd's service token, as linesd
        will call Route."""
        return Routing(self.rch[replica], self.route_token())

    def edge(self, replica=0):
        """A LinesService client holding the HTTP edge's service token
        (playback_authorize), as edged will call AuthorizePlayback."""
        return Lines(self.lch[replica], self.service_token("edged", "linesd"))

    # --- routing ------------------------------------------------------------

    def routing(self, t, replica=0):
        """A RoutingService client with tenant admin (or any person) t's token."""
        return Routing(self.rch[replica], t.token)

    def pa_routing(self, replica=0):
        """A RoutingService client with the platform admin's token."""
        return Routing(self.rch[replica], self.pa.token)

    def node(self, t, name=None, region="eu-west", urls=None, replica=0, **fields):
        """Register a node of tenant admin t (None: the platform admin, into the
        shared pool unless tenant_id is given). urls: NodeUrl messages or
        (format, base_url) pairs; default TS and M3U8 on a made-up host.
        Returns (Node, node_key)."""
        name = name or uniq("node")
        if urls is None:
            urls = [(C.OUTPUT_FORMAT_TS, f"http://{name}.example.net:8080"),
                    (C.OUTPUT_FORMAT_M3U8, f"https://{name}.example.net")]
        urls = [u if isinstance(u, R.NodeUrl) else R.NodeUrl(format=u[0], base_url=u[1]) for u in urls]
        fields.setdefault("max_connections", 10000)
        fields.setdefault("max_egress_mbps", 10000)
        fields.setdefault("idempotency_key", ikey())
        client = self.routing(t, replica) if t is not None else self.pa_routing(replica)
        r = client.RegisterNode(name=name, region=region, urls=urls, **fields)
        return r.node, r.node_key

    def node_client(self, node_key, replica=0):
        """A RoutingService client whose bearer is a node key (heartbeats)."""
        return Routing(self.rch[replica], node_key)

    # --- a ready catalog --------------------------------------------------

    def catalog(self, t, cost=10, max_connections=2, days=30, hours=0, trial=False, streams=3, **pkg):
        """Streams, one bouquet of them and a package of that bouquet, made by
        tenant admin t. Returns ns(streams=[ids], bouquet=id, package=Package)."""
        ids = [t.lines.CreateStream(name=uniq("ch"), kind=L.STREAM_KIND_LIVE, category="News",
                                    idempotency_key=ikey()).stream.id for _ in range(streams)]
        b = t.lines.CreateBouquet(name=uniq("bq"), stream_ids=ids, idempotency_key=ikey()).bouquet
        p = t.lines.CreatePackage(name=uniq("pkg"), duration_days=days, duration_hours=hours,
                                  credit_cost=cost, max_connections=max_connections,
                                  bouquet_ids=[b.id], trial=trial, idempotency_key=ikey(), **pkg).package
        return ns(streams=ids, bouquet=b.id, package=p)

    # --- SQL as postgres ----------------------------------------------------

    def sql(self, q):
        return fdtest.psql(q, db=self.db.name).strip()

    def rows(self, q):
        out = self.sql(q)
        return [line.split("|") for line in out.split("\n")] if out else []

    def books_balance(self, tenant_id):
        """True when the tenant's ledger sums to its balances and every
        reseller's balance equals its entries (billing's invariant)."""
        out = self.sql(f"""
            WITH e AS (
              SELECT account, sum(delta) AS s FROM (
                SELECT from_account AS account, -amount AS delta FROM frontdesk.ledger_entries
                 WHERE tenant_id = {tenant_id}
                UNION ALL
                SELECT to_account, amount FROM frontdesk.ledger_entries WHERE tenant_id = {tenant_id}) x
               GROUP BY account)
            SELECT count(*) FROM frontdesk.credit_balances b
              LEFT JOIN e ON e.account = b.account_id
             WHERE b.tenant_id = {tenant_id} AND b.balance <> coalesce(e.s, 0)""")
        return out == "0"


# --- the HTTP edge ------------------------------------------------------------

def require_edged():
    """Skip the test (pytest) when the build has no edged binary."""
    path = fdtest.binary("edged")
    if os.access(path, os.X_OK):
        return
    msg = (f"edged is not built: {path} does not exist (services/edged/CMakeLists.txt builds it; "
           f"FD_BUILD_DIR={fdtest.BUILD})")
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(msg)
    raise RuntimeError(msg)


class EdgedService(fdtest.Service):
    """edged as fdtest.Service starts the others (env, free port, log in the
    build folder, stop()), but HTTP: ready when GET /healthz answers 200."""

    def __init__(self, db_url, env=None, port=None):
        super().__init__("edged", db_url, env=env, port=port)
        self.url = f"http://127.0.0.1:{self.port}"

    def channel(self, **kw):
        raise TypeError("edged speaks HTTP, not gRPC: use its url")

    def healthz(self, timeout=1.0):
        """(status, body) of GET /healthz, or (0, error) when unreachable."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        except OSError as e:
            return 0, repr(e)
        finally:
            c.close()

    def wait_serving(self, timeout=15.0, want_healthy=True):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edged exited with {self.proc.returncode}:\n" + self.output())
            last = self.healthz()
            if last[0] == 200 or (last[0] and not want_healthy):
                return
            time.sleep(0.05)
        raise TimeoutError(f"edged: /healthz never answered 200 (last: {last})\n" + self.output())


# --- nodes ---------------------------------------------------------------

class Beater:
    """Keeps nodes of a Stack heartbeating with unary Heartbeat every `period` s, each with
    the load the test set last. set() reports at once and returns the
    directive; the periodic reports hold the same lock, so a stale load never
    lands after a new one."""

    def __init__(self, p, period, replica=0):
        self.p = p
        self.replica = replica
        self.period = period
        self.nodes = {}            # node id -> dict(client, load, on)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, node, key, ld=None, on=True):
        """Start heartbeating node (its key); returns the first directive."""
        with self.lock:
            self.nodes[node.id] = {"client": self.p.node_client(key, self.replica),
                                   "load": ld or R.NodeLoad(), "on": on}
            if on:
                return self._send(node.id)
        return None

    def set(self, node, ld):
        """New load for node, reported at once; returns the directive."""
        nid = node if isinstance(node, int) else node.id
        with self.lock:
            self.nodes[nid]["load"] = ld
            self.nodes[nid]["on"] = True
            return self._send(nid)

    def pause(self, node):
        """Stop node's heartbeats; returns the monotonic time just before the
        last report was sent (no report is in flight after this)."""
        nid = node if isinstance(node, int) else node.id
        with self.lock:
            self.nodes[nid]["on"] = False
            return self.nodes[nid].get("sent", 0.0)

    def resume(self, node):
        nid = node if isinstance(node, int) else node.id
        with self.lock:
            self.nodes[nid]["on"] = True
            return self._send(nid)

    def _send(self, nid):
        n = self.nodes[nid]
        n["sent"] = time.monotonic()
        return n["client"].Heartbeat(load=n["load"], timeout=5).directive

    def _run(self):
        while not self.stopped.wait(self.period):
            with self.lock:
                for nid, n in self.nodes.items():
                    if n["on"]:
                        try:
                            self._send(nid)
                        except grpc.RpcError as e:
                            self.errors.append((nid, e.code().name, e.details()))

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
