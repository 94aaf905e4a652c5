"""authd end to end: tenants, the reseller tree, logins, refresh tokens, API
keys, service tokens and the signing keys, through the real binary over
loopback with its own migrated database.

What must hold (DESIGN.md, Tenancy and Security rules; api/frontdesk/v1/auth.proto):
- isolation: another tenant's ids, or ids outside a reseller's subtree, answer
  NOT_FOUND and change nothing; tenant-level calls are the platform admin's;
- credentials: only ES256 tokens signed by authd's keys, for the right
  issuer and audience, unexpired, of an active tenant and account, verify;
  API keys and refresh tokens are checked, revocable and never stored in clear;
- permissions: scopes and reseller permissions bound what a caller may do
  and what it may grant;
- failed logins are rate limited per (account, source) and per source, and a
  stranger cannot lock an account out;
- bad input answers INVALID_ARGUMENT naming the field and stores nothing;
  SQL metacharacters in free text are plain text;
- signing keys rotate without breaking tokens already issued;
- concurrent creates and refreshes stay consistent.

Processes: `main` (one database, one authd) serves most tests; `rl` (tight
login limits), `rot` (key rotation every 10 s, 60 s tokens) and a replica of
`main` are separate authd processes where the configuration differs."""
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdtest  # noqa: E402
import fdapi  # noqa: E402
from fdapi import Auth, code_of, expect, outcome, scope  # noqa: E402

A = fdapi.auth_pb2
C = fdapi.common_pb2

PLATFORM_USER = "admin"
PLATFORM_PW = "platform-admin-pw-1"
LINESD_SECRET = "linesd-secret-" + uuid.uuid4().hex          # >= 32 characters
EDGED_SECRET = "edged-secret-" + uuid.uuid4().hex
SERVICE_SECRETS = f"linesd={LINESD_SECRET},edged={EDGED_SECRET}"

CACHE_MS = 1500                         # FRONTDESK_AUTH_CACHE_MS of `main`
REFUSED_WITHIN = CACHE_MS / 1000 + 2.5  # seconds to wait for a suspension / revocation

# Scope sets by role (claim names).
ALL_SCOPES = set(fdapi.SCOPE_BY_NAME)
SERVICE_ONLY = {"credits_charge", "credits_refund", "route", "playback_authorize",
                "line_channels_read", "playback_events", "sessions_report", "hosts_resolve"}
PLATFORM_SCOPES = ALL_SCOPES - SERVICE_ONLY
TENANT_ADMIN_SCOPES = PLATFORM_SCOPES - {"tenants_write", "bandwidth_write"}
RESELLER_SCOPES = {"tenants_read", "resellers_read", "resellers_write", "api_keys_read",
                   "api_keys_write", "credits_read", "credits_transfer", "catalog_read",
                   "lines_read", "lines_write", "lines_trial", "sessions_read", "sessions_write",
                   "audit_read"}

SUB = A.RESELLER_PERMISSION_CREATE_SUBRESELLERS
TRIALS = A.RESELLER_PERMISSION_CREATE_TRIALS
ACTIVE = A.RESELLER_STATUS_ACTIVE
SUSPENDED = A.RESELLER_STATUS_SUSPENDED

# Free text full of SQL (and LIKE, and printf) metacharacters: legal, stored as is.
EVIL = "O'Brien\"; DROP TABLE frontdesk.accounts; -- \\ 100% _x_ $1 %s ${x} é ☃"


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ns(**kw):
    return types.SimpleNamespace(**kw)


def wait_code(fn, code, timeout, interval=0.1):
    """Polls fn (a call) until it answers `code`; returns the seconds it took."""
    start = time.time()
    last = None
    while True:
        last = outcome(fn)
        if last[0] == code:
            return time.time() - start
        if time.time() - start > timeout:
            raise AssertionError(f"still {last[0]} after {timeout:.1f}s (want {code}): {last[1]}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# JWT pieces, by hand: forgeries must be byte-exact.
# ---------------------------------------------------------------------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    h, p, s = token.split(".")
    return json.loads(unb64u(h)), json.loads(unb64u(p)), s


def seg(obj):
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def make_jwt(header, payload, sign=None):
    signing_input = seg(header) + "." + seg(payload)
    sig = sign(signing_input.encode()) if sign else b""
    return signing_input + "." + b64u(sig)


def es256(private_key):
    def sign(data):
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def hs256(secret):
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def with_payload(token, **changes):
    """A real token with claims changed and its header and signature kept."""
    h, p, s = token.split(".")
    claims = json.loads(unb64u(p))
    claims.update(changes)
    return h + "." + seg(claims) + "." + s


def with_header(token, **changes):
    h, p, s = token.split(".")
    header = json.loads(unb64u(h))
    header.update(changes)
    return seg(header) + "." + p + "." + s


# ---------------------------------------------------------------------------
# One authd with its database, and helpers to populate it.
# ---------------------------------------------------------------------------

class Authd:
    def __init__(self, env=None, db=None):
        self.own_db = db is None
        self.db = db or fdtest.Database()
        try:
            if self.own_db:
                self.db.bootstrap(PLATFORM_USER, PLATFORM_PW)
            self.svc = fdtest.Service("authd", self.db.url, env=env)
        except Exception:
            if self.own_db:
                self.db.drop()
            raise
        self.ch = None
        self.secrets = [PLATFORM_PW, LINESD_SECRET, EDGED_SECRET]
        try:
            self.wait_listening()
            self.svc.wait_serving()
            self.ch = self.svc.channel(options=[("grpc.max_send_message_length", 16 << 20)])
            self.anon = Auth(self.ch)
        except Exception:
            self.close()
            raise

    def wait_listening(self, timeout=15.0):
        """Waits for the port before the first gRPC call: a channel that finds
        nothing listening backs off for seconds before it tries again."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.svc.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.svc.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)

    def start_platform(self):
        r = self.login("platform", PLATFORM_USER, PLATFORM_PW)
        self.pa_login = r
        self.pa = self.as_(r.access_token)

    def close(self):
        if self.ch is not None:
            self.ch.close()
        code = self.svc.stop()
        if self.own_db:
            self.db.drop()
        return code

    def log(self):
        """The process's output so far (also after it stopped)."""
        with open(self.svc.log.name, errors="replace") as f:
            return f.read()

    def as_(self, token):
        return self.anon.with_token(token)

    def login(self, slug, username, password, api=None, **kw):
        r = (api or self.anon).Login(tenant_slug=slug, username=username, password=password, **kw)
        self.secrets += [r.refresh_token, r.access_token.split(".")[2]]
        return r

    def psql(self, sql):
        return fdtest.psql(sql, db=self.db.name).strip()

    def counts(self):
        """Rows of authd's tables that no failed call may add."""
        return self.psql("SELECT (SELECT count(*) FROM frontdesk.tenants), "
                         "(SELECT count(*) FROM frontdesk.accounts), "
                         "(SELECT count(*) FROM frontdesk.api_keys), "
                         "(SELECT count(*) FROM frontdesk.idempotency WHERE service = 'authd')")

    def tenant(self, slug=None, name=None, username="boss", **kw):
        slug = slug or uniq("t")
        pw = "boss-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = self.pa.CreateTenant(slug=slug, name=name or f"Tenant {slug}", admin_username=username,
                                 admin_password=pw, admin_display_name="The Boss", **kw)
        lr = self.login(slug, username, pw)
        return ns(id=r.tenant.id, slug=slug, tenant=r.tenant, admin=r.admin, root=r.admin.id,
                  username=username, pw=pw, login=lr, token=lr.access_token,
                  api=self.as_(lr.access_token))

    def reseller(self, t, creator, parent_id=0, perms=(), username=None, tenant_id=0, **kw):
        username = username or uniq("r")
        pw = "res-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = creator.CreateReseller(tenant_id=tenant_id, parent_id=parent_id, username=username,
                                   password=pw, display_name=f"Reseller {username}",
                                   permissions=list(perms), **kw)
        lr = self.login(t.slug, username, pw)
        return ns(id=r.reseller.id, reseller=r.reseller, username=username, pw=pw, login=lr,
                  token=lr.access_token, api=self.as_(lr.access_token))

    def api_key(self, creator, name=None, **kw):
        r = creator.CreateApiKey(name=name or uniq("key"), **kw)
        self.secrets.append(r.secret)
        return ns(id=r.api_key.id, meta=r.api_key, secret=r.secret, api=self.as_(r.secret))


def platform(env, db=None):
    a = Authd(env, db)
    try:
        a.start_platform()
    except Exception:
        a.close()
        raise
    return a


MAIN_ENV = {
    "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
    "FRONTDESK_SERVICE_SECRETS": SERVICE_SECRETS,
    # Every failed login of this file comes from 127.0.0.1: keep the per-source
    # limit out of the way here (the `rl` process tests it).
    "FRONTDESK_LOGIN_FAILURES_PER_SOURCE": "500",
}


@pytest.fixture(scope="module")
def main():
    a = platform(MAIN_ENV)
    yield a
    assert a.close() == 0, a.log()[-4000:]


@pytest.fixture(scope="module")
def world(main):
    """Two tenants. A: root → r1 (may create sub-resellers) → r1a; root → r2.
    B: root → b1. API keys: ka (A's admin), kr1, kr1a, kr2, kb (B's admin), kb1."""
    a = main.tenant()
    b = main.tenant()
    r1 = main.reseller(a, a.api, perms=[SUB])
    r1a = main.reseller(a, r1.api)
    r2 = main.reseller(a, a.api)
    b1 = main.reseller(b, b.api)
    return ns(
        a=a, b=b, r1=r1, r1a=r1a, r2=r2, b1=b1,
        ka=main.api_key(a.api), kb=main.api_key(b.api),
        kr1=main.api_key(r1.api), kr1a=main.api_key(r1a.api, scopes=[scope("lines_read")]),
        kr2=main.api_key(r2.api), kb1=main.api_key(b1.api))


@pytest.fixture(scope="module")
def published(main):
    return main.anon.GetVerificationKeys()


def public_key(keys, kid):
    [k] = [k for k in keys.keys if k.kid == kid]
    return serialization.load_pem_public_key(k.public_key_pem.encode())


def decode(token, keys, audience="frontdesk"):
    """Verifies a token with PyJWT and the published key of its kid."""
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, key=public_key(keys, kid), algorithms=["ES256"],
                      audience=audience, issuer=keys.issuer or "frontdesk")


# `rot`: signing keys rotate every 10 s, access tokens live 60 s. Started by the
# first test of the file, so that the token it takes at once has expired by the
# last test (test_zz_access_token_expires) without a long wait.
ROT_TTL = 60
ROT_SKEW = 1
ROT_ROTATE = 10


@pytest.fixture(scope="module")
def rot():
    a = platform({"FRONTDESK_SIGNING_KEY_ROTATE": str(ROT_ROTATE),
                  "FRONTDESK_ACCESS_TOKEN_TTL": str(ROT_TTL),
                  "FRONTDESK_CLOCK_SKEW": str(ROT_SKEW)})
    try:
        a.t = a.tenant()
    except Exception:
        a.close()
        raise
    a.first = a.t.login
    yield a
    assert a.close() == 0, a.log()[-4000:]


# ---------------------------------------------------------------------------
# Keys and tokens as published
# ---------------------------------------------------------------------------

def test_verification_keys_are_public_es256_without_private_parts(main, rot, published):
    r = published
    assert r.issuer == "frontdesk"
    assert r.cache_seconds > 0
    assert len(r.keys) >= 1
    assert [k.signing for k in r.keys].count(True) == 1, r
    for k in r.keys:
        assert k.algorithm == "ES256"
        assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", k.kid), k.kid
        pub = serialization.load_pem_public_key(k.public_key_pem.encode())
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
        assert "PRIVATE" not in k.public_key_pem
        jwk = json.loads(k.jwk)
        assert "d" not in jwk, "the JWK must not carry the private scalar"
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
        assert jwk.get("kid", k.kid) == k.kid
        assert jwt.PyJWK(jwk, "ES256").key.public_numbers() == pub.public_numbers()
        assert k.created_at > 0
        assert (k.retire_at == 0) == k.signing
    # The private key is not in the database in clear either.
    rows = main.psql("SELECT kid || ' ' || encode(private_sealed, 'escape') FROM frontdesk.signing_keys")
    assert "PRIVATE KEY" not in rows
    # No credential needed, and a bad one does not matter either.
    assert main.anon.with_token("garbage").GetVerificationKeys().keys


def test_login_tokens_and_caller_as_documented(main, world, published):
    now = time.time()
    for who, r, slug, tenant, role, scopes, reseller in [
        ("platform admin", main.pa_login, "platform", 0, "platform_admin", PLATFORM_SCOPES, 0),
        ("tenant admin", world.a.login, world.a.slug, world.a.id, "tenant_admin",
         TENANT_ADMIN_SCOPES, world.a.root),
        ("reseller", world.r1.login, world.a.slug, world.a.id, "reseller", RESELLER_SCOPES,
         world.r1.id),
    ]:
        header, _, _ = jwt_parts(r.access_token)
        assert header == {"alg": "ES256", "typ": "JWT", "kid": header["kid"]}, header
        [signing] = [k.kid for k in published.keys if k.signing]
        assert header["kid"] == signing
        claims = decode(r.access_token, published)
        c = r.caller
        assert claims["iss"] == "frontdesk" and claims["aud"] == "frontdesk", claims
        assert claims["sub"] == str(c.account_id) and c.account_id > 0, (who, claims)
        assert claims["tenant"] == tenant == c.tenant_id, (who, claims)
        assert claims["reseller"] == reseller == c.reseller_id, (who, claims)
        assert claims["role"] == role, (who, claims)
        assert c.role == getattr(C, "ROLE_" + role.upper())
        assert set(claims["scopes"]) == scopes == fdapi.scope_names(c.scopes), (who, claims)
        assert claims["tslug"] == slug == c.tenant_slug
        assert claims["name"] == c.username
        assert claims["jti"]
        assert claims["nbf"] <= claims["iat"] + 1 and abs(claims["iat"] - now) < 600
        assert claims["exp"] - claims["iat"] == 900, claims           # the default TTL
        assert r.access_token_expires_at == claims["exp"] == c.expires_at
        assert c.credential_kind == A.CREDENTIAL_KIND_ACCESS_TOKEN
        assert re.fullmatch(rf"fdr_{tenant}_[0-9]+_[A-Za-z0-9_-]{{20,}}", r.refresh_token), \
            r.refresh_token
        assert abs(r.refresh_token_expires_at - (claims["iat"] + 30 * 86400)) < 600
        me = main.as_(r.access_token).WhoAmI().caller
        assert me.account_id == c.account_id and me.tenant_id == tenant and me.role == c.role
        assert fdapi.scope_names(me.scopes) == scopes
    # The same username in two tenants is two accounts.
    assert world.a.login.caller.account_id != world.b.login.caller.account_id
    assert world.a.username == world.b.username


def test_passwords_and_secrets_are_not_stored_in_clear(main, world):
    rows = main.psql(f"SELECT a::text FROM frontdesk.accounts a WHERE tenant_id = {world.a.id}")
    assert world.a.pw not in rows and world.r1.pw not in rows
    hashes_ = main.psql(f"SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = {world.a.id}")
    assert all(h.startswith("$argon2id$") for h in hashes_.split("\n")), hashes_
    keys = main.psql(f"SELECT k::text FROM frontdesk.api_keys k WHERE tenant_id = {world.a.id}")
    assert world.ka.secret.split("_", 3)[3] not in keys
    tokens = main.psql(f"SELECT t::text FROM frontdesk.refresh_tokens t WHERE tenant_id = {world.a.id}")
    assert tokens, "refresh tokens are stored (hashed)"
    assert world.a.login.refresh_token.split("_", 3)[3] not in tokens


def test_whoami_needs_a_valid_credential(main, world):
    for md in [None, [("authorization", "")], [("authorization", "Bearer ")],
               [("authorization", "Bearer")], [("authorization", "Basic YWRtaW46eA==")],
               [("authorization", "bearer garbage")], [("authorization", "Bearer a.b.c")],
               [("authorization", "Bearer " + "x" * 5000)]]:
        assert code_of(main.anon.WhoAmI, metadata=md or []) == "UNAUTHENTICATED", md
    # A refresh token is not a bearer credential; a password is not either.
    for cred in [world.a.login.refresh_token, world.a.pw, "fdk_", "fdk_1_2_", "fdr_0_1_x"]:
        assert code_of(main.as_(cred).WhoAmI) == "UNAUTHENTICATED", cred
    # An API key with one part changed.
    t, i, secret = world.ka.secret[4:].split("_", 2)
    for cred in [f"fdk_{world.b.id}_{i}_{secret}", f"fdk_{t}_{int(i) + 1}_{secret}",
                 f"fdk_{t}_{i}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",
                 f"fdk_{t}_{i}_{secret[:-1]}", f"fdk_{t}_{i}_{secret}x", f"fdk_0_{i}_{secret}",
                 f"fdk_-{t}_{i}_{secret}", f"fdk_{t}_{i}_{secret}".upper()]:
        assert code_of(main.as_(cred).WhoAmI) == "UNAUTHENTICATED", cred
    # The genuine ones.
    me = world.ka.api.WhoAmI().caller
    assert me.credential_kind == A.CREDENTIAL_KIND_API_KEY and me.api_key_id == world.ka.id
    assert me.tenant_id == world.a.id and me.role == C.ROLE_TENANT_ADMIN
    assert me.account_id == world.a.root and me.expires_at == 0
    assert fdapi.scope_names(me.scopes) == TENANT_ADMIN_SCOPES


# ---------------------------------------------------------------------------
# Forged and wrong tokens
# ---------------------------------------------------------------------------

ATTACKER_KEY = ec.generate_private_key(ec.SECP256R1())


def forgeries(real, published, world):
    """(name, token) pairs, each of which must be refused."""
    header, claims, sig = jwt_parts(real)
    kid = header["kid"]
    [pem] = [k.public_key_pem for k in published.keys if k.kid == kid]
    mine = es256(ATTACKER_KEY)
    attacker_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ATTACKER_KEY.public_key()))
    h, p, _ = real.split(".")
    raw_sig = unb64u(sig)
    flipped = bytes([raw_sig[0] ^ 1]) + raw_sig[1:]
    return [
        ("alg none", make_jwt({"alg": "none", "typ": "JWT"}, claims)),
        ("alg none with kid", make_jwt({"alg": "none", "typ": "JWT", "kid": kid}, claims)),
        ("alg None", make_jwt({"alg": "None", "typ": "JWT", "kid": kid}, claims)),
        ("alg none, signature kept", make_jwt({"alg": "none", "typ": "JWT", "kid": kid}, claims) + sig),
        ("HS256 keyed with the public PEM", make_jwt({"alg": "HS256", "typ": "JWT", "kid": kid},
                                                      claims, hs256(pem.encode()))),
        ("HS256 keyed with the PEM, no trailing newline",
         make_jwt({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, hs256(pem.strip().encode()))),
        ("ES256 by another key, real kid", make_jwt(header, claims, mine)),
        ("ES256 by another key, its own kid", make_jwt({**header, "kid": "attacker-kid-1"}, claims, mine)),
        ("ES256 by another key, embedded jwk", make_jwt({**header, "jwk": attacker_jwk}, claims, mine)),
        ("ES384 header", with_header(real, alg="ES384")),
        ("RS256 header", with_header(real, alg="RS256")),
        ("unknown kid", with_header(real, kid="no-such-kid-0001")),
        ("kid with SQL", with_header(real, kid="x' OR '1'='1")),
        ("kid path", with_header(real, kid="../../../../etc/passwd")),
        ("no kid", make_jwt({"alg": "ES256", "typ": "JWT"}, claims, mine)),
        ("payload: role", with_payload(real, role="platform_admin")),
        ("payload: tenant", with_payload(real, tenant=world.b.id)),
        ("payload: tenant 0", with_payload(real, tenant=0, role="platform_admin", tslug="platform")),
        ("payload: sub", with_payload(real, sub=str(world.b.root))),
        ("payload: scopes", with_payload(real, scopes=sorted(ALL_SCOPES))),
        ("payload: exp", with_payload(real, exp=claims["exp"] + 86400)),
        ("payload: expired", with_payload(real, exp=int(time.time()) - 3600,
                                          iat=int(time.time()) - 4000, nbf=int(time.time()) - 4000)),
        ("signature flipped", f"{h}.{p}.{b64u(flipped)}"),
        ("signature truncated", f"{h}.{p}.{b64u(raw_sig[:-1])}"),
        ("signature empty", f"{h}.{p}."),
        ("signature zero (CVE-2022-21449)", f"{h}.{p}.{b64u(bytes(64))}"),
        ("signature of n (r=s=n)", f"{h}.{p}.{b64u(bytes.fromhex('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551') * 2)}"),
        ("signature DER", f"{h}.{p}.{b64u(der_of(raw_sig))}"),
        ("two segments", f"{h}.{p}"),
        ("four segments", f"{real}.{sig}"),
        ("header not JSON", f"{b64u(b'{alg:ES256')}.{p}.{sig}"),
        ("payload not JSON", f"{h}.{b64u(b'not json')}.{sig}"),
        ("whitespace inside", f"{h} .{p}.{sig}"),
    ]


def der_of(raw):
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def test_forged_tokens_are_refused(main, world, published):
    real = world.r1.token
    for name, token in forgeries(real, published, world):
        got, what = outcome(main.as_(token).WhoAmI)
        assert got == "UNAUTHENTICATED", (name, got, what)
        # Refused by a method that acts on data too, not only by WhoAmI.
        got, what = outcome(main.as_(token).ListResellers)
        assert got == "UNAUTHENTICATED", (name, got, what)
    # The real one still works (the forgeries did not poison a cache).
    assert main.as_(real).WhoAmI().caller.account_id == world.r1.id


def test_token_of_another_installation_is_refused(main, rot):
    """Same issuer and audience, signed by another authd's key."""
    got, what = outcome(main.as_(rot.first.access_token).WhoAmI)
    assert got == "UNAUTHENTICATED", what


# ---------------------------------------------------------------------------
# Service tokens
# ---------------------------------------------------------------------------

def test_service_token_for_another_audience_is_refused_here(main, published):
    r = main.anon.IssueServiceToken(service_name="linesd", secret=LINESD_SECRET,
                                    scopes=[scope("credits_charge"), scope("credits_refund")],
                                    audience="billingd")
    now = time.time()
    assert r.audience == "billingd"
    assert fdapi.scope_names(r.scopes) == {"credits_charge", "credits_refund"}
    assert now < r.expires_at <= now + 900 + 2
    claims = decode(r.token, published, audience="billingd")
    assert claims["aud"] == "billingd" and claims["iss"] == "frontdesk"
    assert claims["role"] == "service" and claims["sub"] == "service:linesd"
    assert set(claims["scopes"]) == {"credits_charge", "credits_refund"}
    assert claims["exp"] == r.expires_at
    # A real, well signed token whose audience is billingd: authd refuses it.
    assert code_of(main.as_(r.token).WhoAmI) == "UNAUTHENTICATED"
    assert code_of(main.as_(r.token).ListTenants) == "UNAUTHENTICATED"


def test_service_token_scopes_default_and_bounds(main):
    def issue(name, secret, scopes=(), audience="billingd"):
        return main.anon.IssueServiceToken(service_name=name, secret=secret,
                                           scopes=[scope(s) for s in scopes], audience=audience)
    assert fdapi.scope_names(issue("linesd", LINESD_SECRET, audience="routerd").scopes) == \
        {"credits_charge", "credits_refund", "route", "nodes_read"}
    assert fdapi.scope_names(issue("edged", EDGED_SECRET, audience="linesd").scopes) == \
        {"playback_authorize", "line_channels_read", "playback_events", "sessions_report", "hosts_resolve"}
    for name, secret, scopes in [("linesd", LINESD_SECRET, ["playback_authorize"]),
                                 ("linesd", LINESD_SECRET, ["tenants_write"]),
                                 ("linesd", LINESD_SECRET, ["credits_charge", "credits_mint"]),
                                 ("edged", EDGED_SECRET, ["credits_charge"]),
                                 ("edged", EDGED_SECRET, ["lines_read"])]:
        assert code_of(issue, name, secret, scopes) == "PERMISSION_DENIED", (name, scopes)
    for name, secret in [("linesd", LINESD_SECRET[:-1]), ("linesd", LINESD_SECRET + "x"),
                         ("linesd", EDGED_SECRET), ("edged", LINESD_SECRET),
                         ("linesd", LINESD_SECRET.upper()), ("billingd", LINESD_SECRET),
                         ("hackerd", LINESD_SECRET), ("linesd", "wrong-secret" * 4),
                         ("hackerd", "wrong-secret" * 4)]:
        assert code_of(issue, name, secret) == "UNAUTHENTICATED", (name, secret)
    # No secret (and no mTLS identity on this plaintext channel), or no name.
    for name, secret in [("linesd", ""), ("", LINESD_SECRET)]:
        assert code_of(issue, name, secret) in ("UNAUTHENTICATED", "INVALID_ARGUMENT"), name
    for aud in ["", "edged", "frontdesk", "nosuchd", "authd "]:
        got, what = outcome(issue, "linesd", LINESD_SECRET, audience=aud)
        assert got == "INVALID_ARGUMENT" and "audience" in what, (aud, got, what)


def test_service_token_for_authd_is_a_service_caller_without_people_rights(main, world):
    r = main.anon.IssueServiceToken(service_name="linesd", secret=LINESD_SECRET, audience="authd")
    svc = main.as_(r.token)
    me = svc.WhoAmI().caller
    assert me.role == C.ROLE_SERVICE and me.credential_kind == A.CREDENTIAL_KIND_SERVICE_TOKEN
    assert me.service_name == "linesd" and me.account_id == 0 and me.tenant_id == 0
    assert me.expires_at == r.expires_at
    before = main.counts()
    for call, kw in [(svc.CreateTenant, dict(slug=uniq("svc"), name="x", admin_username="a",
                                             admin_password="long-enough-pw")),
                     (svc.ListTenants, {}),
                     (svc.GetTenant, dict(tenant_id=world.a.id)),
                     (svc.SuspendTenant, dict(tenant_id=world.a.id)),
                     (svc.CreateReseller, dict(tenant_id=world.a.id, parent_id=world.a.root,
                                               username=uniq("svc"), password="long-enough-pw")),
                     (svc.ListResellers, dict(tenant_id=world.a.id)),
                     (svc.CreateApiKey, dict(tenant_id=world.a.id, reseller_id=world.a.root,
                                             name="svc")),
                     (svc.RevokeApiKey, dict(tenant_id=world.a.id, api_key_id=world.ka.id))]:
        assert code_of(call, **kw) == "PERMISSION_DENIED", call.__name__
    assert main.counts() == before
    assert world.ka.api.WhoAmI().caller.api_key_id == world.ka.id


# ---------------------------------------------------------------------------
# Isolation between tenants, and inside a tenant between subtrees
# ---------------------------------------------------------------------------

def snapshot_tenant(main, t_id):
    """What another tenant's caller must not be able to change (read as the platform admin)."""
    pa = main.pa
    tenant = pa.GetTenant(tenant_id=t_id).tenant
    res = sorted((r.id, r.username, r.display_name, r.status, tuple(r.permissions), r.notes,
                  r.updated_at) for r in pa.ListResellers(tenant_id=t_id, page_size=1000).resellers)
    keys = sorted((k.id, k.name, k.reseller_id, k.revoked_at, k.expires_at, tuple(k.scopes))
                  for k in pa.ListApiKeys(tenant_id=t_id, page_size=1000,
                                          include_revoked=True).api_keys)
    rows = main.psql(f"SELECT (SELECT count(*) FROM frontdesk.accounts WHERE tenant_id = {t_id}),"
                     f" (SELECT count(*) FROM frontdesk.api_keys WHERE tenant_id = {t_id}),"
                     f" (SELECT count(*) FROM frontdesk.refresh_tokens WHERE tenant_id = {t_id}"
                     f"  AND revoked_at IS NULL)")
    return (tenant.SerializeToString(), res, keys, rows)


def not_found_or_empty(fn, field, **kw):
    """A filter naming an id outside the caller's reach: NOT_FOUND, or nothing listed."""
    got, what = outcome(fn, **kw)
    if got == "OK":
        assert not list(getattr(what, field)), (fn.__name__, kw, what)
    else:
        assert got == "NOT_FOUND", (fn.__name__, kw, got, what)


def cross_tenant_calls(w, b_tenant, far_res, far_key):
    """Calls naming tenant B (or its ids) that must answer NOT_FOUND."""
    t = uniq("x")
    return [
        ("GetTenant", dict(tenant_id=b_tenant)),
        ("CreateReseller", dict(tenant_id=b_tenant, username=t, password="long-enough-pw")),
        ("CreateReseller", dict(tenant_id=0, parent_id=w.b.root, username=t, password="long-enough-pw")),
        ("CreateReseller", dict(tenant_id=0, parent_id=far_res, username=t, password="long-enough-pw")),
        ("CreateReseller", dict(tenant_id=b_tenant, parent_id=w.b.root, username=t,
                                password="long-enough-pw")),
        ("GetReseller", dict(tenant_id=b_tenant, reseller_id=far_res)),
        ("GetReseller", dict(tenant_id=b_tenant, reseller_id=0)),
        ("GetReseller", dict(tenant_id=0, reseller_id=far_res)),
        ("GetReseller", dict(tenant_id=0, reseller_id=w.b.root)),
        ("ListResellers", dict(tenant_id=b_tenant)),
        ("UpdateReseller", dict(tenant_id=b_tenant, reseller_id=far_res, display_name="pwned")),
        ("UpdateReseller", dict(tenant_id=0, reseller_id=far_res, display_name="pwned")),
        ("UpdateReseller", dict(tenant_id=0, reseller_id=far_res, status=SUSPENDED)),
        ("UpdateReseller", dict(tenant_id=0, reseller_id=far_res, new_password="pwned-password")),
        ("UpdateReseller", dict(tenant_id=0, reseller_id=w.b.root, new_password="pwned-password")),
        ("UpdateReseller", dict(tenant_id=b_tenant, reseller_id=far_res,
                                permissions=A.ResellerPermissionList(values=[SUB, TRIALS]))),
        ("CreateApiKey", dict(tenant_id=b_tenant, name="pwned")),
        ("CreateApiKey", dict(tenant_id=0, reseller_id=far_res, name="pwned")),
        ("CreateApiKey", dict(tenant_id=b_tenant, reseller_id=far_res, name="pwned")),
        ("ListApiKeys", dict(tenant_id=b_tenant)),
        ("ListApiKeys", dict(tenant_id=b_tenant, reseller_id=far_res)),
        ("RevokeApiKey", dict(tenant_id=b_tenant, api_key_id=far_key)),
        ("RevokeApiKey", dict(tenant_id=0, api_key_id=far_key)),
    ]


@pytest.mark.parametrize("cred", ["token", "api_key"])
def test_tenant_admin_cannot_reach_another_tenant(main, world, cred):
    w = world
    caller = w.a.api if cred == "token" else w.ka.api
    before_b, before_a = snapshot_tenant(main, w.b.id), snapshot_tenant(main, w.a.id)
    missing = w.b.id + 100000         # a tenant that does not exist: the same answer
    for b_tenant in [w.b.id, missing]:
        for method, kw in cross_tenant_calls(w, b_tenant, w.b1.id, w.kb1.id):
            got, what = outcome(getattr(caller, method), **kw)
            assert got == "NOT_FOUND", (cred, method, kw, got, what)
    not_found_or_empty(caller.ListResellers, "resellers", tenant_id=0, parent_id=w.b1.id)
    not_found_or_empty(caller.ListResellers, "resellers", tenant_id=0, parent_id=w.b.root)
    not_found_or_empty(caller.ListApiKeys, "api_keys", tenant_id=0, reseller_id=w.b1.id)
    # Tenant-level calls are the platform admin's.
    for method, kw in [("ListTenants", {}), ("SuspendTenant", dict(tenant_id=w.b.id)),
                       ("SuspendTenant", dict(tenant_id=w.a.id)), ("SuspendTenant", dict(tenant_id=0)),
                       ("SuspendTenant", dict(tenant_id=w.b.id, reactivate=True)),
                       ("CreateTenant", dict(slug=uniq("t"), name="n", admin_username="a",
                                             admin_password="long-enough-pw"))]:
        got, what = outcome(getattr(caller, method), **kw)
        assert got == "PERMISSION_DENIED", (cred, method, got, what)
    # Its own tenant, by 0 or by id.
    assert caller.GetTenant(tenant_id=0).tenant.id == w.a.id
    assert caller.GetTenant(tenant_id=w.a.id).tenant.slug == w.a.slug
    # Nothing changed on either side; B's credentials still work.
    assert snapshot_tenant(main, w.b.id) == before_b
    assert snapshot_tenant(main, w.a.id) == before_a
    assert w.kb1.api.WhoAmI().caller.api_key_id == w.kb1.id
    assert w.b1.api.WhoAmI().caller.account_id == w.b1.id
    # B's username with A's slug is not B's account.
    assert code_of(main.anon.Login, tenant_slug=w.a.slug, username=w.b1.username,
                   password=w.b1.pw) == "UNAUTHENTICATED"


def test_platform_admin_names_the_tenant_it_acts_in(main, world):
    w, pa = world, main.pa
    assert pa.GetTenant(tenant_id=w.b.id).tenant.slug == w.b.slug
    assert pa.GetReseller(tenant_id=w.b.id, reseller_id=w.b1.id).reseller.username == w.b1.username
    assert w.b1.id in {r.id for r in pa.ListResellers(tenant_id=w.b.id, page_size=1000).resellers}
    assert w.kb.id in {k.id for k in pa.ListApiKeys(tenant_id=w.b.id, page_size=1000).api_keys}
    ids = {t.id for t in pa.ListTenants(page_size=1000).tenants}
    assert {w.a.id, w.b.id} <= ids
    # Tenant 0 is its own (the platform): B's reseller is not there.
    assert code_of(pa.GetReseller, tenant_id=0, reseller_id=w.b1.id) == "NOT_FOUND"
    missing = w.b.id + 100000
    wrong = []
    for method, kw in [("GetTenant", dict(tenant_id=missing)),
                       ("SuspendTenant", dict(tenant_id=missing)),
                       ("ListResellers", dict(tenant_id=missing)),
                       ("GetReseller", dict(tenant_id=missing, reseller_id=w.b1.id)),
                       ("CreateApiKey", dict(tenant_id=missing, reseller_id=w.b1.id, name="k")),
                       ("CreateReseller", dict(tenant_id=missing, parent_id=w.b.root,
                                               username=uniq("r"), password="long-enough-pw")),
                       ("ListApiKeys", dict(tenant_id=missing)),
                       ("RevokeApiKey", dict(tenant_id=missing, api_key_id=w.kb.id)),
                       ("UpdateReseller", dict(tenant_id=missing, reseller_id=w.b1.id,
                                               display_name="x")),
                       # The tenant exists, the parent is in another one.
                       ("CreateReseller", dict(tenant_id=w.a.id, parent_id=w.b.root,
                                               username=uniq("r"), password="long-enough-pw"))]:
        got, what = outcome(getattr(pa, method), **kw)
        if got != "NOT_FOUND":
            wrong.append((method, kw, got, what))
    assert not wrong, wrong


def subtree_calls(target, target_key):
    return [
        ("GetReseller", dict(reseller_id=target)),
        ("UpdateReseller", dict(reseller_id=target, display_name="pwned")),
        ("UpdateReseller", dict(reseller_id=target, status=SUSPENDED)),
        ("UpdateReseller", dict(reseller_id=target, new_password="pwned-password")),
        ("UpdateReseller", dict(reseller_id=target, notes=C.OptionalString(value="pwned"))),
        ("CreateApiKey", dict(reseller_id=target, name="pwned", scopes=[scope("lines_read")])),
        ("RevokeApiKey", dict(api_key_id=target_key)),
    ]


@pytest.mark.parametrize("cred", ["token", "api_key"])
def test_reseller_cannot_reach_outside_its_subtree(main, world, cred):
    w = world
    r1 = w.r1.api if cred == "token" else w.kr1.api
    r2 = w.r2.api if cred == "token" else w.kr2.api
    r1a = w.r1a.api                      # its key only reads lines
    before = snapshot_tenant(main, w.a.id), snapshot_tenant(main, w.b.id)
    cases = [(r2, "r2", w.r1.id, w.kr1.id), (r2, "r2", w.r1a.id, w.kr1a.id),
             (r2, "r2", w.a.root, w.ka.id),
             (r1, "r1", w.r2.id, w.kr2.id), (r1, "r1", w.a.root, w.ka.id),
             (r1, "r1", w.b1.id, w.kb1.id),
             (r1a, "r1a", w.r1.id, w.kr1.id), (r1a, "r1a", w.r2.id, w.kr2.id)]
    for api, who, target, key in cases:
        for method, kw in subtree_calls(target, key):
            got, what = outcome(getattr(api, method), **kw)
            assert got == "NOT_FOUND", (cred, who, method, kw, got, what)
        not_found_or_empty(api.ListResellers, "resellers", parent_id=target)
        not_found_or_empty(api.ListApiKeys, "api_keys", reseller_id=target)
    # r1 may create sub-resellers, but not under someone outside its subtree.
    for parent in [w.r2.id, w.a.root, w.b1.id]:
        got, what = outcome(r1.CreateReseller, parent_id=parent, username=uniq("x"),
                            password="long-enough-pw")
        assert got == "NOT_FOUND", (cred, parent, got, what)
    # Its own tenant only.
    assert code_of(r1.GetTenant, tenant_id=w.b.id) == "NOT_FOUND"
    assert code_of(r1.ListResellers, tenant_id=w.b.id) == "NOT_FOUND"
    assert r1.GetTenant(tenant_id=0).tenant.id == w.a.id
    # What each one sees: its own subtree, itself included.
    seen = {r.id for r in r1.ListResellers(page_size=1000).resellers}
    assert seen == {w.r1.id, w.r1a.id}, seen
    seen = {r.id for r in r2.ListResellers(page_size=1000).resellers}
    assert seen == {w.r2.id}, seen
    assert {k.reseller_id for k in r1.ListApiKeys(page_size=1000).api_keys} <= {w.r1.id, w.r1a.id}
    assert {k.id for k in r1.ListApiKeys(page_size=1000).api_keys} >= {w.kr1.id, w.kr1a.id}
    assert {k.reseller_id for k in r2.ListApiKeys(page_size=1000).api_keys} == {w.r2.id}
    assert r1.GetReseller(reseller_id=w.r1a.id).reseller.parent_id == w.r1.id
    assert r1.GetReseller(reseller_id=0).reseller.id == w.r1.id
    assert (snapshot_tenant(main, w.a.id), snapshot_tenant(main, w.b.id)) == before
    for k in [w.kr1, w.kr1a, w.kr2, w.ka, w.kb1]:
        assert k.api.WhoAmI().caller.api_key_id == k.id


def test_page_tokens_do_not_widen_a_listing(main, world):
    """A page token from a wider listing, replayed by a narrower caller."""
    w = world
    page = w.a.api.ListResellers(page_size=1)
    assert page.next_page_token, "more than one reseller in A: there is a next page"
    for api, allowed in [(w.r2.api, {w.r2.id}), (w.r1.api, {w.r1.id, w.r1a.id}),
                         (w.b.api, None)]:
        got, what = outcome(api.ListResellers, page_size=1000, page_token=page.next_page_token)
        if got == "OK":
            ids = {r.id for r in what.resellers}
            if allowed is None:
                assert not ids & {w.r1.id, w.r1a.id, w.r2.id, w.a.root}, ids
            else:
                assert ids <= allowed, ids
        else:
            assert got == "INVALID_ARGUMENT", (got, what)


# ---------------------------------------------------------------------------
# Permissions: scopes and reseller permissions
# ---------------------------------------------------------------------------

def test_reseller_permissions_bound_what_it_may_do_and_grant(main, world):
    w = world
    before = main.counts()
    r1, r2 = w.r1.api, w.r2.api
    denied = [
        (r1.CreateTenant, dict(slug=uniq("t"), name="n", admin_username="a",
                               admin_password="long-enough-pw")),
        (r1.ListTenants, {}),
        (r1.SuspendTenant, dict(tenant_id=w.a.id)),
        # Scopes a reseller does not hold.
        (r1.CreateApiKey, dict(name="k", scopes=[scope("tenants_write")])),
        (r1.CreateApiKey, dict(name="k", scopes=[scope("catalog_write")])),
        (r1.CreateApiKey, dict(name="k", scopes=[scope("credits_mint")])),
        (r1.CreateApiKey, dict(name="k", scopes=[scope("forward_client_address")])),
        (r1.CreateApiKey, dict(name="k", scopes=[scope("credits_charge")])),
        (r1.CreateApiKey, dict(name="k", scopes=[scope("lines_read"), scope("nodes_write")])),
        (r1.CreateApiKey, dict(name="k", reseller_id=w.r1a.id, scopes=[scope("catalog_write")])),
        # No CREATE_SUBRESELLERS.
        (r2.CreateReseller, dict(username=uniq("x"), password="long-enough-pw")),
        (w.r1a.api.CreateReseller, dict(username=uniq("x"), password="long-enough-pw")),
        # CREATE_TRIALS is not r1's to grant.
        (r1.CreateReseller, dict(username=uniq("x"), password="long-enough-pw",
                                 permissions=[TRIALS])),
        (r1.CreateReseller, dict(username=uniq("x"), password="long-enough-pw",
                                 permissions=[SUB, TRIALS])),
        (r1.UpdateReseller, dict(reseller_id=w.r1a.id,
                                 permissions=A.ResellerPermissionList(values=[TRIALS]))),
        # Its own status and permissions are its parent's to change.
        (r1.UpdateReseller, dict(reseller_id=w.r1.id, status=SUSPENDED)),
        (r1.UpdateReseller, dict(reseller_id=w.r1.id,
                                 permissions=A.ResellerPermissionList(values=[SUB, TRIALS]))),
        (r1.UpdateReseller, dict(reseller_id=w.r1.id, permissions=A.ResellerPermissionList(values=[]))),
        (w.r1a.api.UpdateReseller, dict(reseller_id=w.r1a.id, status=SUSPENDED)),
        # The tenant admin lacks the service scopes and the platform's.
        (w.a.api.CreateApiKey, dict(name="k", scopes=[scope("credits_charge")])),
        (w.a.api.CreateApiKey, dict(name="k", scopes=[scope("tenants_write")])),
        (w.a.api.CreateApiKey, dict(name="k", scopes=[scope("bandwidth_write")])),
        (main.pa.CreateApiKey, dict(name="k", scopes=[scope("route")])),
        (main.pa.CreateApiKey, dict(name="k", scopes=[scope("playback_authorize")])),
    ]
    for call, kw in denied:
        got, what = outcome(call, **kw)
        assert got == "PERMISSION_DENIED", (call.__name__, kw, got, what)
    assert main.counts() == before
    r = w.r1.api.GetReseller(reseller_id=0).reseller
    assert r.status == ACTIVE and list(r.permissions) == [SUB]
    assert list(w.r1.api.GetReseller(reseller_id=w.r1a.id).reseller.permissions) == []


def test_api_key_scopes_bound_the_key_and_the_keys_it_makes(main, world):
    w = world
    before_keys = main.psql(f"SELECT count(*) FROM frontdesk.api_keys WHERE tenant_id = {w.a.id}")
    reader = main.api_key(w.a.api, scopes=[scope("resellers_read")])
    assert fdapi.scope_names(reader.meta.scopes) == {"resellers_read"}
    assert fdapi.scope_names(reader.api.WhoAmI().caller.scopes) == {"resellers_read"}
    assert reader.api.ListResellers().resellers
    for call, kw in [(reader.api.CreateReseller, dict(username=uniq("x"), password="long-enough-pw")),
                     (reader.api.UpdateReseller, dict(reseller_id=w.r2.id, display_name="x")),
                     (reader.api.CreateApiKey, dict(name="k")),
                     (reader.api.ListApiKeys, {}),
                     (reader.api.RevokeApiKey, dict(api_key_id=w.kr2.id)),
                     (reader.api.GetTenant, {})]:
        assert code_of(call, **kw) == "PERMISSION_DENIED", call.__name__
    maker = main.api_key(w.a.api, scopes=[scope("api_keys_write")])
    assert code_of(maker.api.CreateApiKey, name="k", scopes=[scope("resellers_write")]) == \
        "PERMISSION_DENIED"
    # Empty scopes = the account's, yet never wider than the creating key's.
    got, what = outcome(maker.api.CreateApiKey, name="k-default")
    if got == "OK":
        main.secrets.append(what.secret)
        assert fdapi.scope_names(what.api_key.scopes) <= {"api_keys_write"}, what.api_key
    else:
        assert got == "PERMISSION_DENIED", (got, what)
    made = maker.api.CreateApiKey(name="k-narrow", scopes=[scope("api_keys_write")])
    main.secrets.append(made.secret)
    assert fdapi.scope_names(made.api_key.scopes) == {"api_keys_write"}
    assert made.api_key.created_by == w.a.root and made.api_key.reseller_id == w.a.root
    # A tenant admin's key for a reseller, scopes left empty: the reseller's.
    for_res = w.a.api.CreateApiKey(name="for r2", reseller_id=w.r2.id)
    main.secrets.append(for_res.secret)
    assert fdapi.scope_names(for_res.api_key.scopes) == RESELLER_SCOPES
    me = main.as_(for_res.secret).WhoAmI().caller
    assert me.role == C.ROLE_RESELLER and me.account_id == w.r2.id and me.tenant_id == w.a.id
    # A reseller's key for its sub-reseller.
    sub = w.r1.api.CreateApiKey(name="for r1a", reseller_id=w.r1a.id, scopes=[scope("lines_read")])
    main.secrets.append(sub.secret)
    assert sub.api_key.reseller_id == w.r1a.id and sub.api_key.created_by == w.r1.id
    assert main.as_(sub.secret).WhoAmI().caller.account_id == w.r1a.id
    n = int(main.psql(f"SELECT count(*) FROM frontdesk.api_keys WHERE tenant_id = {w.a.id}"))
    assert n - int(before_keys) in (5, 6)


# ---------------------------------------------------------------------------
# Tenants
# ---------------------------------------------------------------------------

def test_create_tenant_returns_tenant_and_root_admin(main):
    slug = uniq("acme")
    before = time.time()
    r = main.pa.CreateTenant(slug=slug, name="Acme TV", admin_username="acme.admin@x",
                             admin_password="acme-pw-123456", admin_display_name="Acme Admin")
    t, adm = r.tenant, r.admin
    assert t.id > 0 and t.slug == slug and t.name == "Acme TV"
    assert t.status == A.TENANT_STATUS_ACTIVE and t.suspend_reason == "" and t.suspended_at == 0
    assert before - 5 <= t.created_at <= time.time() + 5
    assert adm.id > 0 and adm.tenant_id == t.id and adm.parent_id == 0 and adm.depth == 0
    assert adm.role == C.ROLE_TENANT_ADMIN and adm.username == "acme.admin@x"
    assert adm.display_name == "Acme Admin" and adm.status == ACTIVE
    assert adm.effective_status == ACTIVE
    assert main.pa.GetTenant(tenant_id=t.id).tenant == t
    lr = main.login(slug, "acme.admin@x", "acme-pw-123456")
    assert lr.caller.tenant_id == t.id and lr.caller.account_id == adm.id
    assert lr.caller.reseller_id == adm.id and lr.caller.tenant_slug == slug
    # The slug is taken, whatever the rest of the request.
    before_counts = main.counts()
    for name, user in [("Other", "x"), ("Acme TV", "acme.admin@x")]:
        got, what = outcome(main.pa.CreateTenant, slug=slug, name=name, admin_username=user,
                            admin_password="other-pw-123456")
        assert got == "ALREADY_EXISTS", (got, what)
    assert main.counts() == before_counts


def test_create_tenant_idempotency(main):
    key = str(uuid.uuid4())
    req = A.CreateTenantRequest(slug=uniq("idem"), name="Idem", admin_username="boss",
                                admin_password="idem-pw-123456", idempotency_key=key)
    first = main.pa.CreateTenant(req)
    before = main.counts()
    again = main.pa.CreateTenant(req)
    assert again.tenant.id == first.tenant.id and again.admin.id == first.admin.id
    assert main.counts() == before
    other = A.CreateTenantRequest()
    other.CopyFrom(req)
    other.name = "Idem, changed"
    assert code_of(main.pa.CreateTenant, other) == "FAILED_PRECONDITION"
    other.CopyFrom(req)
    other.slug = uniq("idem")
    assert code_of(main.pa.CreateTenant, other) == "FAILED_PRECONDITION"
    assert main.counts() == before


def test_list_tenants_pages_and_filters(main):
    made = [main.tenant(name=f"Pager {i}") for i in range(3)]
    every = main.pa.ListTenants(page_size=1000)
    assert not every.next_page_token
    all_ids = [t.id for t in every.tenants]
    assert len(all_ids) == len(set(all_ids)) and {t.id for t in made} <= set(all_ids)
    seen, token, pages = [], "", 0
    while True:
        page = main.pa.ListTenants(page_size=2, page_token=token)
        assert len(page.tenants) <= 2
        seen += [t.id for t in page.tenants]
        pages += 1
        token = page.next_page_token
        if not token:
            break
        assert pages < 1000
    assert sorted(seen) == sorted(all_ids) and len(seen) == len(set(seen))
    # Query: slug or name contains the text, case-insensitively.
    hits = {t.id for t in main.pa.ListTenants(query=made[1].slug.upper(), page_size=1000).tenants}
    assert hits == {made[1].id}
    hits = {t.id for t in main.pa.ListTenants(query="pAGER 2", page_size=1000).tenants}
    assert made[2].id in hits and made[0].id not in hits
    # LIKE's metacharacters are plain text in a query.
    for q in ["%", "_", "\\", "'", "%%", "_%_"]:
        got = {t.id for t in main.pa.ListTenants(query=q, page_size=1000).tenants}
        want = {t.id for t in every.tenants if q.lower() in t.slug.lower() or q.lower() in t.name.lower()}
        assert got == want, (q, got, want)


def test_suspend_tenant_refuses_its_credentials_and_reactivates(main, world):
    t = main.tenant()
    rr = main.reseller(t, t.api)
    key = main.api_key(t.api)
    rkey = main.api_key(rr.api)
    creds = [t.api, rr.api, key.api, rkey.api]
    for api in creds:
        api.WhoAmI()
    wrong = expect("UNAUTHENTICATED", main.anon.Login, tenant_slug=t.slug, username=t.username,
                   password="not-the-password")
    r = main.pa.SuspendTenant(tenant_id=t.id, reason=EVIL)
    assert r.tenant.status == A.TENANT_STATUS_SUSPENDED and r.tenant.suspend_reason == EVIL
    assert r.tenant.suspended_at > 0
    for api in creds:
        wait_code(api.WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)
        assert code_of(api.ListResellers) == "UNAUTHENTICATED"
    # Logins refused, with the same message as a wrong password; refresh too.
    for user, pw in [(t.username, t.pw), (rr.username, rr.pw)]:
        got = expect("UNAUTHENTICATED", main.anon.Login, tenant_slug=t.slug, username=user, password=pw)
        assert got == wrong
    assert code_of(main.anon.Refresh, refresh_token=t.login.refresh_token) == "UNAUTHENTICATED"
    # The platform sees it; other tenants do not notice.
    assert main.pa.GetTenant(tenant_id=t.id).tenant.status == A.TENANT_STATUS_SUSPENDED
    susp = {x.id for x in main.pa.ListTenants(status=A.TENANT_STATUS_SUSPENDED, page_size=1000).tenants}
    act = {x.id for x in main.pa.ListTenants(status=A.TENANT_STATUS_ACTIVE, page_size=1000).tenants}
    assert t.id in susp and t.id not in act and world.a.id in act and world.a.id not in susp
    assert world.a.api.WhoAmI().caller.tenant_id == world.a.id
    assert world.ka.api.WhoAmI().caller.tenant_id == world.a.id
    # Reactivated: everything works again.
    r = main.pa.SuspendTenant(tenant_id=t.id, reactivate=True)
    assert r.tenant.status == A.TENANT_STATUS_ACTIVE and r.tenant.suspended_at == 0
    assert r.tenant.suspend_reason == ""
    for api in creds:
        wait_code(api.WhoAmI, "OK", REFUSED_WITHIN)
    main.login(t.slug, t.username, t.pw)
    main.login(t.slug, rr.username, rr.pw)


# ---------------------------------------------------------------------------
# Resellers
# ---------------------------------------------------------------------------

def test_reseller_tree_fields_paging_and_filters(main):
    t = main.tenant()
    p = main.reseller(t, t.api, perms=[SUB, TRIALS], notes="top seller")
    c = [main.reseller(t, p.api, perms=[TRIALS]) for _ in range(3)]
    g = main.reseller(t, t.api, parent_id=c[0].id)           # the admin names a deep parent
    loose = [main.reseller(t, t.api) for _ in range(3)]
    r = p.reseller
    assert r.tenant_id == t.id and r.parent_id == t.root and r.depth == 1
    assert r.role == C.ROLE_RESELLER and r.status == ACTIVE and r.effective_status == ACTIVE
    assert sorted(r.permissions) == [SUB, TRIALS] and r.notes == "top seller"
    assert r.display_name == f"Reseller {p.username}" and r.created_at > 0
    assert c[0].reseller.parent_id == p.id and c[0].reseller.depth == 2
    assert list(c[0].reseller.permissions) == [TRIALS]
    assert g.reseller.parent_id == c[0].id and g.reseller.depth == 3
    assert g.login.caller.reseller_id == g.id and g.login.caller.role == C.ROLE_RESELLER
    # last_login_at is set by a login.
    assert t.api.GetReseller(reseller_id=p.id).reseller.last_login_at > 0
    everyone = {t.root, p.id, g.id} | {x.id for x in c + loose}
    listed = t.api.ListResellers(page_size=1000)
    assert {x.id for x in listed.resellers} == everyone and not listed.next_page_token
    seen, token = [], ""
    while True:
        page = t.api.ListResellers(page_size=3, page_token=token)
        assert len(page.resellers) <= 3
        seen += [x.id for x in page.resellers]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(everyone)
    seen, token = [], ""
    while True:
        page = p.api.ListResellers(page_size=1, page_token=token)
        seen += [x.id for x in page.resellers]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted({p.id, g.id} | {x.id for x in c})
    # parent_id: direct children only.
    assert {x.id for x in t.api.ListResellers(parent_id=p.id).resellers} == {x.id for x in c}
    assert {x.id for x in p.api.ListResellers(parent_id=c[0].id).resellers} == {g.id}
    assert {x.id for x in t.api.ListResellers(parent_id=t.root, page_size=1000).resellers} == \
        {p.id} | {x.id for x in loose}
    # query: username or display name contains the text.
    assert {x.id for x in t.api.ListResellers(query=c[1].username).resellers} == {c[1].id}
    assert {x.id for x in p.api.ListResellers(query=loose[0].username).resellers} == set()


def test_update_reseller(main):
    t = main.tenant()
    p = main.reseller(t, t.api, perms=[SUB])
    c = main.reseller(t, p.api)
    r = t.api.UpdateReseller(reseller_id=p.id, display_name="New Name")
    assert r.reseller.display_name == "New Name" and list(r.reseller.permissions) == [SUB]
    r = t.api.UpdateReseller(reseller_id=p.id, notes=C.OptionalString(value="a note"),
                             permissions=A.ResellerPermissionList(values=[SUB, TRIALS]))
    assert r.reseller.notes == "a note" and sorted(r.reseller.permissions) == [SUB, TRIALS]
    assert r.reseller.display_name == "New Name"
    # Set wrappers with empty values clear; unset ones keep.
    r = t.api.UpdateReseller(reseller_id=p.id, notes=C.OptionalString(value=""),
                             permissions=A.ResellerPermissionList(values=[]))
    assert r.reseller.notes == "" and list(r.reseller.permissions) == []
    assert r.reseller.display_name == "New Name"
    got = t.api.GetReseller(reseller_id=p.id).reseller
    assert got.notes == "" and list(got.permissions) == [] and got.display_name == "New Name"
    # Without CREATE_SUBRESELLERS now (within the status cache).
    wait_code(lambda: p.api.CreateReseller(username=uniq("x"), password="long-enough-pw"),
              "PERMISSION_DENIED", REFUSED_WITHIN, interval=0.5)
    # A reseller updates a child: display name yes; a permission it lacks no.
    t.api.UpdateReseller(reseller_id=p.id, permissions=A.ResellerPermissionList(values=[SUB]))
    assert p.api.UpdateReseller(reseller_id=c.id, display_name="Child").reseller.display_name == "Child"
    assert code_of(p.api.UpdateReseller, reseller_id=c.id,
                   permissions=A.ResellerPermissionList(values=[TRIALS])) == "PERMISSION_DENIED"
    # New password: the old one stops working, the refresh tokens are revoked.
    newpw = "brand-new-pw-" + uuid.uuid4().hex
    main.secrets.append(newpw)
    t.api.UpdateReseller(reseller_id=c.id, new_password=newpw)
    assert code_of(main.anon.Login, tenant_slug=t.slug, username=c.username,
                   password=c.pw) == "UNAUTHENTICATED"
    assert code_of(main.anon.Refresh, refresh_token=c.login.refresh_token) == "UNAUTHENTICATED"
    main.login(t.slug, c.username, newpw)


def whole_state(main):
    """Every row of authd's tables and of the audit trail, as one digest: a
    refused call must leave it as it was."""
    parts = [f"(SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')"
             f" FROM frontdesk.{table} x)"
             for table in ["tenants", "accounts", "api_keys", "refresh_tokens", "idempotency",
                           "audit_events"]]
    return main.psql("SELECT " + " || ' ' || ".join(parts))


def password_hash(main, tenant, account):
    return main.psql(f"SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = {tenant} "
                     f"AND id = {account}")


def test_own_password_change_needs_the_current_one_and_an_access_token(main):
    t = main.tenant()
    r = main.reseller(t, t.api, perms=[SUB])
    c = main.reseller(t, r.api)
    new = "my-new-pw-" + uuid.uuid4().hex
    wrong = "not-my-pw-" + uuid.uuid4().hex
    main.secrets += [new, wrong]
    key = main.api_key(r.api, scopes=[scope("resellers_write"), scope("resellers_read")])
    for who, me in [(r, r.id), (t, t.root)]:
        own = who.api
        for rid in (0, me):
            before = whole_state(main)
            # No current password: refused, naming the field.
            msg = expect("INVALID_ARGUMENT", own.UpdateReseller, reseller_id=rid, new_password=new)
            assert "current_password" in msg
            assert whole_state(main) == before
            # A wrong one: refused, nothing changed (one audit event of the attempt).
            h = password_hash(main, t.id, me)
            msg = expect("PERMISSION_DENIED", own.UpdateReseller, reseller_id=rid, new_password=new,
                         current_password=wrong, display_name="Must not stick")
            assert "current_password" in msg
            assert password_hash(main, t.id, me) == h
            assert own.GetReseller(reseller_id=me).reseller.display_name != "Must not stick"
    # An API key cannot change its account's password, even with the right current one.
    key.api.GetReseller()        # its first use stamps last_used_at: before the snapshot
    before = whole_state(main)
    msg = expect("PERMISSION_DENIED", key.api.UpdateReseller, new_password=new, current_password=r.pw)
    assert "API key" in msg
    assert whole_state(main) == before
    # ... but still changes what else its scopes allow.
    assert key.api.UpdateReseller(display_name="Set by key").reseller.display_name == "Set by key"
    # current_password belongs to one's own change only.
    msg = expect("INVALID_ARGUMENT", r.api.UpdateReseller, reseller_id=c.id, new_password=new,
                 current_password=r.pw)
    assert "current_password" in msg
    # The old passwords still work: nothing above changed them.
    main.login(t.slug, r.username, r.pw)
    main.login(t.slug, t.username, t.pw)
    # The right one: changed, the old one refused, the refresh tokens revoked.
    lr = main.login(t.slug, r.username, r.pw)
    r.api.UpdateReseller(new_password=new, current_password=r.pw)
    assert code_of(main.anon.Login, tenant_slug=t.slug, username=r.username,
                   password=r.pw) == "UNAUTHENTICATED"
    assert code_of(main.anon.Refresh, refresh_token=lr.refresh_token) == "UNAUTHENTICATED"
    main.login(t.slug, r.username, new)
    # An admin's reset of someone else's password needs no current password.
    t.api.UpdateReseller(reseller_id=c.id, new_password=new)
    main.login(t.slug, c.username, new)


def test_platform_admin_changes_only_its_own_account_in_the_platform(main):
    pa = main.pa
    me = main.pa_login.caller.account_id
    before = whole_state(main)
    for kw, field in [(dict(new_password="whatever-pw-1"), "current_password"),
                      (dict(reseller_id=me + 100000, new_password="whatever-pw-1",
                            current_password=PLATFORM_PW), "tenant_id"),
                      (dict(status=SUSPENDED), "status")]:
        got, what = outcome(pa.UpdateReseller, **kw)
        assert got in ("INVALID_ARGUMENT", "PERMISSION_DENIED") and field in what, (kw, got, what)
    assert whole_state(main) == before
    new = "pa-new-pw-" + uuid.uuid4().hex
    main.secrets.append(new)
    assert pa.UpdateReseller(new_password=new, current_password=PLATFORM_PW).reseller.id == me
    try:
        assert code_of(main.anon.Login, tenant_slug="platform", username=PLATFORM_USER,
                       password=PLATFORM_PW) == "UNAUTHENTICATED"
        main.login("platform", PLATFORM_USER, new)
    finally:
        pa.UpdateReseller(reseller_id=me, new_password=PLATFORM_PW, current_password=new)
    main.login("platform", PLATFORM_USER, PLATFORM_PW)


# Text that looks like something else in a portal (issue 12, item 5): each
# class refused for every free-text and name field of authd, nothing written.
BLANK = ["   ", "\u3000", "\u200b\u200b", "\t"]
BIDI = ["abc\u202edef", "\u202aabc", "abc\u2066d\u2069"]
C1 = ["abc\u0085def", "\u009b31m", "abc\u0080"]
EDGE_BLANK = [" lead", "trail ", "\u00a0nbsp", "zw\u200b"]


def hygiene_cases():
    fields = [  # method, caller, field, kind, wrap
        ("CreateTenant", "pa", "name", "name"),
        ("CreateTenant", "pa", "admin_display_name", "name"),
        ("SuspendTenant", "pa", "reason", "text"),
        ("CreateReseller", "admin", "display_name", "name"),
        ("CreateReseller", "admin", "notes", "text"),
        ("UpdateReseller", "admin", "display_name", "name"),
        ("UpdateReseller", "admin", "notes", "text"),
        ("CreateApiKey", "admin", "name", "name"),
        ("ListResellers", "admin", "query", "text"),
        ("ListTenants", "pa", "query", "text"),
        ("ListAuditEvents", "admin", "target", "text"),
    ]
    cases = []
    for method, caller, field, kind in fields:
        classes = [("blank", BLANK), ("bidi", BIDI), ("c1", C1)]
        if kind == "name":
            classes.append(("edge", EDGE_BLANK))
        for cls, values in classes:
            for i, v in enumerate(values):
                cases.append(pytest.param(method, caller, field, v, id=f"{method}.{field}-{cls}{i}"))
    return cases


def hygiene_request(method, w):
    return {
        "CreateTenant": dict(slug=uniq("txt"), name="Fine", admin_username="boss",
                             admin_password="long-enough-pw", admin_display_name="Boss"),
        "SuspendTenant": dict(tenant_id=w.b.id, reason="fine"),
        "CreateReseller": dict(username=uniq("txt"), password="long-enough-pw", display_name="Fine",
                               idempotency_key=uniq("k")),
        "UpdateReseller": dict(reseller_id=w.r2.id, display_name="Fine"),
        "CreateApiKey": dict(name="fine", scopes=[scope("lines_read")], idempotency_key=uniq("k")),
        "ListResellers": {}, "ListTenants": {}, "ListAuditEvents": {},
    }[method]


@pytest.mark.parametrize("method,caller,field,value", hygiene_cases())
def test_text_hygiene_refused_for_every_field(main, world, method, caller, field, value):
    api = {"pa": main.pa, "admin": world.a.api}[caller]
    fields = hygiene_request(method, world)
    # The same request with a clean value passes (so the refusal is the value's).
    if method == "UpdateReseller" and field == "notes":
        fields[field] = C.OptionalString(value=value)
    else:
        fields[field] = value
    before = whole_state(main)
    got, what = outcome(getattr(api, method), **fields)
    assert got == "INVALID_ARGUMENT", (got, str(what)[:300])
    assert field in what, f"the message should name {field}: {what[:300]}"
    assert whole_state(main) == before


def test_clean_text_next_to_the_refused_classes_is_accepted(main, world):
    w = world
    for name in ["Ünïcødé ☃ name", "a b", "x", "日本語 名前", "mid\u00a0nbsp"]:
        r = w.a.api.CreateReseller(username=uniq("ok"), password="long-enough-pw", display_name=name,
                                   notes="  indented\u00a0text ")
        assert r.reseller.display_name == name and r.reseller.notes == "  indented\u00a0text "
    k = w.a.api.CreateApiKey(name="key \u00e9", scopes=[scope("lines_read")])
    main.secrets.append(k.secret)
    assert k.api_key.name == "key \u00e9"


def test_suspending_a_reseller_suspends_its_subtree(main):
    t = main.tenant()
    p = main.reseller(t, t.api, perms=[SUB])
    c = main.reseller(t, p.api, perms=[SUB])
    g = main.reseller(t, c.api)
    s = main.reseller(t, t.api)                       # a sibling: not affected
    keys = [main.api_key(x.api) for x in (p, c, g)]
    below = [p.api, c.api, g.api] + [k.api for k in keys]
    wrong = expect("UNAUTHENTICATED", main.anon.Login, tenant_slug=t.slug, username=s.username,
                   password="not-the-password")
    suspended = t.api.UpdateReseller(reseller_id=p.id, status=SUSPENDED).reseller
    assert suspended.status == SUSPENDED
    got = t.api.GetReseller(reseller_id=p.id).reseller
    assert got.status == SUSPENDED and got.effective_status == SUSPENDED, got
    for x in (c, g):
        got = t.api.GetReseller(reseller_id=x.id).reseller
        assert got.status == ACTIVE and got.effective_status == SUSPENDED, got
    for api in below:
        wait_code(api.WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)
        assert code_of(api.ListResellers) == "UNAUTHENTICATED"
    for x in (p, c, g):
        got = expect("UNAUTHENTICATED", main.anon.Login, tenant_slug=t.slug, username=x.username,
                     password=x.pw)
        assert got == wrong
        assert code_of(main.anon.Refresh, refresh_token=x.login.refresh_token) == "UNAUTHENTICATED"
    assert s.api.WhoAmI().caller.account_id == s.id
    main.login(t.slug, s.username, s.pw)
    only = {x.id for x in t.api.ListResellers(status=SUSPENDED, page_size=1000).resellers}
    assert only == {p.id}
    act = {x.id for x in t.api.ListResellers(status=ACTIVE, page_size=1000).resellers}
    assert {c.id, g.id, s.id} <= act and p.id not in act
    # Reactivated: the subtree works again.
    r = t.api.UpdateReseller(reseller_id=p.id, status=ACTIVE)
    assert r.reseller.status == ACTIVE
    assert t.api.GetReseller(reseller_id=p.id).reseller.effective_status == ACTIVE
    assert t.api.GetReseller(reseller_id=g.id).reseller.effective_status == ACTIVE
    for api in [c.api, g.api] + [k.api for k in keys]:
        wait_code(api.WhoAmI, "OK", REFUSED_WITHIN)
    for x in (p, c, g):
        main.login(t.slug, x.username, x.pw)
    # A middle reseller suspended by its parent reseller: the same below it.
    p2 = main.as_(main.login(t.slug, p.username, p.pw).access_token)
    p2.UpdateReseller(reseller_id=c.id, status=SUSPENDED)
    wait_code(g.api.WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)
    assert code_of(main.anon.Login, tenant_slug=t.slug, username=g.username,
                   password=g.pw) == "UNAUTHENTICATED"
    p2.WhoAmI()
    # UpdateReseller's own answer shows the new effective status too.
    assert suspended.effective_status == SUSPENDED, suspended


def test_create_reseller_and_api_key_idempotency_is_scoped(main, world):
    w = world
    key = str(uuid.uuid4())
    req = A.CreateResellerRequest(username=uniq("idem"), password="idem-pw-123456",
                                  display_name="Idem", idempotency_key=key)
    first = w.a.api.CreateReseller(req).reseller
    before = main.counts()
    assert w.a.api.CreateReseller(req).reseller.id == first.id
    assert main.counts() == before
    changed = A.CreateResellerRequest()
    changed.CopyFrom(req)
    changed.display_name = "Idem changed"
    assert code_of(w.a.api.CreateReseller, changed) == "FAILED_PRECONDITION"
    assert main.counts() == before
    # The same key and request in tenant B: B's own reseller, nothing of A's.
    in_b = w.b.api.CreateReseller(req).reseller
    assert in_b.tenant_id == w.b.id and in_b.id != first.id and in_b.parent_id == w.b.root
    # API keys: a replay returns the metadata, without the secret.
    kreq = A.CreateApiKeyRequest(name="idem key", scopes=[scope("lines_read")], idempotency_key=key)
    k1 = w.r1.api.CreateApiKey(kreq)
    main.secrets.append(k1.secret)
    k2 = w.r1.api.CreateApiKey(kreq)
    assert k2.api_key.id == k1.api_key.id and k2.secret == ""
    stored = main.psql("SELECT encode(response, 'hex') FROM frontdesk.idempotency WHERE service = 'authd'")
    assert k1.secret.split("_", 3)[3].encode().hex() not in stored
    kchanged = A.CreateApiKeyRequest()
    kchanged.CopyFrom(kreq)
    kchanged.name = "other"
    assert code_of(w.r1.api.CreateApiKey, kchanged) == "FAILED_PRECONDITION"
    # Another reseller of the same tenant replaying r1's key and request must
    # not get r1's key back (it is outside its subtree).
    got, what = outcome(w.r2.api.CreateApiKey, kreq)
    if got == "OK":
        main.secrets.append(what.secret)
        assert what.api_key.id != k1.api_key.id and what.api_key.reseller_id == w.r2.id, what
    else:
        assert got in ("FAILED_PRECONDITION", "ALREADY_EXISTS"), (got, what)
    # And tenant B's admin with the same key gets its own.
    kb = w.b.api.CreateApiKey(kreq)
    main.secrets.append(kb.secret)
    assert kb.api_key.tenant_id == w.b.id and kb.api_key.id != k1.api_key.id and kb.secret


# ---------------------------------------------------------------------------
# API keys
# ---------------------------------------------------------------------------

def test_api_key_create_list_revoke(main, world):
    w = world
    r = w.a.api.CreateApiKey(name="portal", scopes=[scope("resellers_read"), scope("api_keys_read")])
    main.secrets.append(r.secret)
    k = r.api_key
    m = re.fullmatch(r"fdk_([0-9]+)_([0-9]+)_([A-Za-z0-9_-]{43})", r.secret)
    assert m, r.secret
    assert int(m.group(1)) == w.a.id == k.tenant_id and int(m.group(2)) == k.id
    assert r.secret.startswith(k.prefix) and len(k.prefix) < len(r.secret) - 40
    assert k.reseller_id == w.a.root and k.created_by == w.a.root and k.name == "portal"
    assert k.expires_at == 0 and k.revoked_at == 0 and k.created_at > 0
    assert fdapi.scope_names(k.scopes) == {"resellers_read", "api_keys_read"}
    api = main.as_(r.secret)
    me = api.WhoAmI().caller
    assert me.credential_kind == A.CREDENTIAL_KIND_API_KEY and me.api_key_id == k.id
    assert fdapi.scope_names(me.scopes) == {"resellers_read", "api_keys_read"}
    # Listing: metadata, never a secret.
    listed = w.a.api.ListApiKeys(page_size=1000)
    assert k.id in {x.id for x in listed.api_keys}
    raw = listed.SerializeToString()
    for secret in [r.secret, w.ka.secret]:
        assert secret.split("_", 3)[3].encode() not in raw
    assert code_of(api.ListApiKeys) == "OK"
    # Revoked: refused within the cache time, listed only with include_revoked.
    rv = w.a.api.RevokeApiKey(api_key_id=k.id).api_key
    assert rv.id == k.id and rv.revoked_at > 0
    took = wait_code(api.WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)
    assert took <= CACHE_MS / 1000 + 1.5
    assert code_of(api.ListResellers) == "UNAUTHENTICATED"
    assert k.id not in {x.id for x in w.a.api.ListApiKeys(page_size=1000).api_keys}
    with_revoked = w.a.api.ListApiKeys(page_size=1000, include_revoked=True).api_keys
    [again] = [x for x in with_revoked if x.id == k.id]
    assert again.revoked_at > 0
    # Filter by account.
    mine = w.a.api.ListApiKeys(reseller_id=w.r1.id, page_size=1000).api_keys
    assert {x.reseller_id for x in mine} == {w.r1.id} and w.kr1.id in {x.id for x in mine}
    # A reseller revokes a key in its subtree.
    sub = main.api_key(w.r1.api, reseller_id=w.r1a.id, scopes=[scope("lines_read")])
    w.r1.api.RevokeApiKey(api_key_id=sub.id)
    wait_code(sub.api.WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)


def test_api_key_expiry(main, world):
    w = world
    now = int(time.time())
    assert code_of(w.a.api.CreateApiKey, name="past", expires_at=now - 60) == "INVALID_ARGUMENT"
    exp = now + 3
    k = main.api_key(w.a.api, name="short", expires_at=exp)
    assert k.meta.expires_at == exp
    me = k.api.WhoAmI().caller
    assert me.expires_at == exp
    wait_code(k.api.WhoAmI, "UNAUTHENTICATED", exp - time.time() + CACHE_MS / 1000 + 2)
    assert time.time() >= exp - 1, "refused before it expired"
    assert code_of(k.api.ListResellers) == "UNAUTHENTICATED"
    assert k.id in {x.id for x in w.a.api.ListApiKeys(page_size=1000, include_revoked=True).api_keys}


# ---------------------------------------------------------------------------
# Refresh tokens and logout
# ---------------------------------------------------------------------------

def test_refresh_rotates_and_reuse_revokes_the_family(main, world, published):
    w = world
    first = main.login(w.a.slug, w.r2.username, w.r2.pw)
    other = main.login(w.a.slug, w.r2.username, w.r2.pw)          # a second session
    r = main.anon.Refresh(refresh_token=first.refresh_token)
    main.secrets.append(r.refresh_token)
    assert r.refresh_token != first.refresh_token and r.access_token != first.access_token
    assert r.caller.account_id == w.r2.id and r.caller.tenant_id == w.a.id
    assert decode(r.access_token, published)["sub"] == str(w.r2.id)
    assert main.as_(r.access_token).WhoAmI().caller.account_id == w.r2.id
    r2 = main.anon.Refresh(refresh_token=r.refresh_token)
    main.secrets.append(r2.refresh_token)
    # The used one again: refused, and the family's newest stops working too.
    assert code_of(main.anon.Refresh, refresh_token=first.refresh_token) == "UNAUTHENTICATED"
    assert code_of(main.anon.Refresh, refresh_token=r2.refresh_token) == "UNAUTHENTICATED"
    assert code_of(main.anon.Refresh, refresh_token=r.refresh_token) == "UNAUTHENTICATED"
    # The other session is another family.
    r3 = main.anon.Refresh(refresh_token=other.refresh_token)
    main.secrets.append(r3.refresh_token)
    # A wrong secret with a real id is refused and revokes nothing (ids are not secret).
    t, i, secret = r3.refresh_token[4:].split("_", 2)
    for bad in [f"fdr_{t}_{i}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",
                f"fdr_{t}_{i}_{secret[:-1]}", f"fdr_{w.b.id}_{i}_{secret}", f"fdr_0_{i}_{secret}",
                f"fdr_{t}_{int(i) - 1}_{secret}", f"fdk_{t}_{i}_{secret}", w.ka.secret,
                r3.access_token, "fdr_", "fdr_1_1_" + "A" * 43]:
        assert code_of(main.anon.Refresh, refresh_token=bad) in ("UNAUTHENTICATED",), bad
    assert code_of(main.anon.Refresh, refresh_token="") in ("UNAUTHENTICATED", "INVALID_ARGUMENT")
    # Logout with the tenant part changed revokes nothing either.
    for bad in [f"fdr_{w.b.id}_{i}_{secret}", f"fdr_{t}_{i}_{secret[:-1]}"]:
        got, what = outcome(main.anon.Logout, refresh_token=bad)
        assert got == "UNAUTHENTICATED" or (got == "OK" and what.revoked == 0), (bad, got, what)
    r4 = main.anon.Refresh(refresh_token=r3.refresh_token)
    main.secrets.append(r4.refresh_token)
    assert r4.caller.account_id == w.r2.id


def test_platform_admin_sessions_refresh_and_log_out(main):
    """Tenant 0's refresh tokens (fdr_0_...) work like any other."""
    lr = main.login("platform", PLATFORM_USER, PLATFORM_PW)
    assert lr.refresh_token.startswith("fdr_0_")
    got, r = outcome(main.anon.Refresh, refresh_token=lr.refresh_token)
    assert got == "OK", (got, r)
    main.secrets.append(r.refresh_token)
    assert r.caller.role == C.ROLE_PLATFORM_ADMIN and r.caller.tenant_id == 0
    assert main.as_(r.access_token).WhoAmI().caller.account_id == lr.caller.account_id
    assert main.anon.Logout(refresh_token=r.refresh_token).revoked >= 1
    assert code_of(main.anon.Refresh, refresh_token=r.refresh_token) == "UNAUTHENTICATED"


def test_logout(main, world):
    t = main.tenant()
    x = main.reseller(t, t.api)                      # one session from the helper
    sessions = [main.login(t.slug, x.username, x.pw) for _ in range(3)]
    y = main.reseller(t, t.api)                      # someone else
    # all_sessions needs an access token.
    assert code_of(main.anon.Logout, all_sessions=True) == "UNAUTHENTICATED"
    out = x.api.Logout(all_sessions=True)
    assert out.revoked == 4, out                      # the helper's login and the three
    for s in sessions + [x.login]:
        assert code_of(main.anon.Refresh, refresh_token=s.refresh_token) == "UNAUTHENTICATED"
    main.secrets.append(main.anon.Refresh(refresh_token=y.login.refresh_token).refresh_token)
    # One family, by its refresh token (no access token needed).
    one = main.login(t.slug, x.username, x.pw)
    rr = main.anon.Refresh(refresh_token=one.refresh_token)
    main.secrets.append(rr.refresh_token)
    keep = main.login(t.slug, x.username, x.pw)
    assert main.anon.Logout(refresh_token=rr.refresh_token).revoked >= 1
    assert code_of(main.anon.Refresh, refresh_token=rr.refresh_token) == "UNAUTHENTICATED"
    main.secrets.append(main.anon.Refresh(refresh_token=keep.refresh_token).refresh_token)
    # Another tenant's admin cannot log x out by naming nothing of its own.
    z = main.login(t.slug, x.username, x.pw)
    world.b.api.Logout(all_sessions=True)
    main.secrets.append(main.anon.Refresh(refresh_token=z.refresh_token).refresh_token)


# ---------------------------------------------------------------------------
# Bad input: INVALID_ARGUMENT naming the field, nothing stored
# ---------------------------------------------------------------------------

class Raw:
    """Bytes sent as a string field, past the client's UTF-8 check."""

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Raw({self.data!r})"


USERNAME_BAD = ["", "x" * 65, "x" * 10240, "a'b", "a;b", 'a"b', "a\\b", "a%b", "a b", "a\x01b",
                "a\nb", "a\x7fb", "a\tb", "é", "a*b", "a/b", "admin'--", "a,b", "(a)", "a=b",
                Raw(b"user\xffname\xfe1"), Raw(b"user\x00name-12"), Raw(b"us\xc0\xafername1")]
SLUG_BAD = ["", "-ab", "ab-", "Ab", "a_b", "a.b", "a'b", "a;b", 'a"b', "a\\b", "a%b", "a b",
            "ab\n", "x" * 64, "é", "a\x01b", "ab'--", "a@b", Raw(b"slug\xffname\xfe1")]
CONTROL = ["a\x01b", "a\nb", "a\x7fb", "a\x1b[31mred"]
PASSWORD_BAD = ["", "7chars!", "x" * 1025, "x" * (1 << 20), Raw(b"pass\xffword\xfe12"),
                Raw(b"password\x00evil")]


def bad_cases():
    cases = []

    def add(method, caller, field, values):
        for v in values:
            label = repr(v)[:40]
            cases.append(pytest.param(method, caller, field, v, id=f"{method}.{field}={label}"))
    add("CreateTenant", "pa", "slug", SLUG_BAD)
    add("CreateTenant", "pa", "name", ["", "x" * 201, *CONTROL, Raw(b"name\xffname\xfe1")])
    add("CreateTenant", "pa", "admin_username", USERNAME_BAD)
    add("CreateTenant", "pa", "admin_password", PASSWORD_BAD)
    add("CreateTenant", "pa", "admin_display_name", ["x" * 201, *CONTROL])
    add("CreateTenant", "pa", "idempotency_key", ["k" * 129, "k\x01ey"])
    add("CreateReseller", "admin", "username", USERNAME_BAD)
    add("CreateReseller", "admin", "password", PASSWORD_BAD)
    add("CreateReseller", "admin", "display_name", ["x" * 201, *CONTROL, Raw(b"disp\xffname\xfe1")])
    add("CreateReseller", "admin", "notes", ["x" * 2001])
    add("CreateReseller", "admin", "permissions", [[99]])
    add("CreateReseller", "admin", "idempotency_key", ["k" * 129])
    add("UpdateReseller", "admin", "display_name", ["x" * 201, *CONTROL])
    add("UpdateReseller", "admin", "notes", [C.OptionalString(value="x" * 2001)])
    add("UpdateReseller", "admin", "new_password", ["7chars!", "x" * 1025, "x" * (1 << 20)])
    add("UpdateReseller", "admin", "status", [99])
    add("UpdateReseller", "admin", "permissions", [A.ResellerPermissionList(values=[99])])
    add("CreateApiKey", "admin", "name", ["", "x" * 101, *CONTROL, Raw(b"keyn\xffname\xfe1")])
    add("CreateApiKey", "admin", "scopes", [[99]])
    add("CreateApiKey", "admin", "expires_at", ["past"])
    add("CreateApiKey", "admin", "idempotency_key", ["k" * 129])
    add("Login", "anon", "username", ["", "x" * 10240, Raw(b"user\xffname\xfe1")])
    add("Login", "anon", "password", ["x" * (1 << 20), Raw(b"pass\xffword\xfe12")])
    add("Login", "anon", "tenant_slug", ["x" * 10240])
    add("ListResellers", "admin", "query", ["x" * (1 << 20)])
    add("ListResellers", "admin", "page_token", ["x" * (1 << 20)])
    add("ListTenants", "pa", "query", ["x" * (1 << 20)])
    return cases


def base_request(method, w):
    return {
        "CreateTenant": dict(slug=uniq("bad"), name="Bad", admin_username="boss",
                             admin_password="long-enough-pw", admin_display_name="Boss"),
        "CreateReseller": dict(username=uniq("bad"), password="long-enough-pw", display_name="X"),
        "UpdateReseller": dict(reseller_id=w.r2.id),
        "CreateApiKey": dict(name="k", scopes=[scope("lines_read")]),
        "Login": dict(tenant_slug=w.a.slug, username=w.r2.username, password=w.r2.pw),
        "ListResellers": {},
        "ListTenants": {},
    }[method]


def send(api, method, fields):
    raws = {k: v for k, v in fields.items() if isinstance(v, Raw)}
    if not raws:
        return getattr(api, method)(**fields)
    req_cls, _, _ = api.stub(method)
    placeholders = {k: ("Z" * len(v.data)) for k, v in raws.items()}
    assert len(raws) == 1
    msg = req_cls(**{k: placeholders.get(k, v) for k, v in fields.items()})
    [(k, v)] = raws.items()
    return api.raw(method, fdapi.replace_bytes(msg, placeholders[k], v.data))


@pytest.mark.parametrize("method,caller,field,value", bad_cases())
def test_bad_input_is_refused_naming_the_field(main, world, method, caller, field, value):
    api = {"pa": main.pa, "admin": world.a.api, "anon": main.anon}[caller]
    fields = base_request(method, world)
    if value == "past":
        value = int(time.time()) - 60
    fields[field] = value
    before = main.counts()
    target = world.a.api.GetReseller(reseller_id=world.r2.id).reseller
    got, what = outcome(send, api, method, fields)
    assert got == "INVALID_ARGUMENT", (got, str(what)[:300])
    assert field in what, f"the message should name {field}: {what[:300]}"
    assert main.counts() == before
    assert world.a.api.GetReseller(reseller_id=world.r2.id).reseller == target


def test_edges_of_the_limits_are_accepted(main, world):
    w = world
    pa = main.pa
    slug = ("a" + uuid.uuid4().hex * 2)[:61] + "-z"          # 63 characters
    for s in [slug, "a--" + uuid.uuid4().hex[:8]]:
        pw = "x" * 8
        r = pa.CreateTenant(slug=s, name="é" * 200, admin_username="u" * 64, admin_password=pw,
                            admin_display_name="d" * 200)
        assert r.tenant.slug == s and r.tenant.name == "é" * 200
        assert r.admin.username == "u" * 64
        main.login(s, "u" * 64, pw)
    for user, pw in [("Ab.c_d@e-f", "p" * 1024), ("x", "é" * 4), ("0", "12345678")]:
        r = w.a.api.CreateReseller(username=user, password=pw, display_name="ü" * 200,
                                   notes="n" * 2000)
        assert r.reseller.username == user and r.reseller.display_name == "ü" * 200
        assert r.reseller.notes == "n" * 2000
        main.login(w.a.slug, user, pw)
    k = w.a.api.CreateApiKey(name="k" * 100, scopes=[scope("lines_read")])
    main.secrets.append(k.secret)
    assert k.api_key.name == "k" * 100
    # Taken: the same name again is ALREADY_EXISTS.
    assert code_of(w.a.api.CreateReseller, username="Ab.c_d@e-f", password="long-enough-pw") == \
        "ALREADY_EXISTS"


def test_sql_metacharacters_in_free_text_are_plain_text(main, world):
    w = world
    tables = main.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'frontdesk'")
    before = main.counts()
    t = main.pa.CreateTenant(slug=uniq("evil"), name=EVIL, admin_username="boss",
                             admin_password="evil-pw-123456", admin_display_name=EVIL)
    assert t.tenant.name == EVIL and t.admin.display_name == EVIL
    assert main.pa.GetTenant(tenant_id=t.tenant.id).tenant.name == EVIL
    r = w.a.api.CreateReseller(username=uniq("evil"), password="evil-pw-123456", display_name=EVIL,
                               notes=EVIL * 3)
    got = w.a.api.GetReseller(reseller_id=r.reseller.id).reseller
    assert got.display_name == EVIL and got.notes == EVIL * 3
    k = w.a.api.CreateApiKey(name=EVIL, scopes=[scope("lines_read")])
    main.secrets.append(k.secret)
    [listed] = [x for x in w.a.api.ListApiKeys(page_size=1000).api_keys if x.id == k.api_key.id]
    assert listed.name == EVIL
    hits = {x.id for x in w.a.api.ListResellers(query="O'Brien\"; DROP", page_size=1000).resellers}
    assert hits == {r.reseller.id}
    upd = w.a.api.UpdateReseller(reseller_id=r.reseller.id, display_name=EVIL[::-1],
                                 notes=C.OptionalString(value=EVIL[::-1])).reseller
    assert upd.display_name == EVIL[::-1] and upd.notes == EVIL[::-1]
    s = main.pa.SuspendTenant(tenant_id=t.tenant.id, reason=EVIL).tenant
    assert s.suspend_reason == EVIL
    assert main.pa.GetTenant(tenant_id=s.id).tenant.suspend_reason == EVIL
    main.pa.SuspendTenant(tenant_id=s.id, reactivate=True)
    # In queries too.
    hits = {x.id for x in w.a.api.ListResellers(query=EVIL[::-1][:20], page_size=1000).resellers}
    assert hits == {r.reseller.id}
    hits = {x.id for x in main.pa.ListTenants(query=EVIL, page_size=1000).tenants}
    assert hits == {s.id}
    # Exactly what was created, and the schema is whole.
    b = [int(x) for x in before.split("|")]
    after = [int(x) for x in main.counts().split("|")]
    assert after[:3] == [b[0] + 1, b[1] + 2, b[2] + 1], (before, after)
    assert main.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'frontdesk'") == tables
    assert main.psql(f"SELECT display_name FROM frontdesk.accounts WHERE tenant_id = {w.a.id} "
                     f"AND id = {r.reseller.id}") == EVIL[::-1]


def test_like_metacharacters_in_reseller_queries(main):
    t = main.tenant()
    names = {"plain one": None, "100% off": None, "under_score": None, "back\\slash": None,
             "quote'd": None}
    for n in names:
        names[n] = t.api.CreateReseller(username=uniq("q"), password="long-enough-pw",
                                        display_name=n).reseller.id
    for q, want in [("%", {"100% off"}), ("_", {"under_score"}), ("\\", {"back\\slash"}),
                    ("'", {"quote'd"}), ("0%", {"100% off"}), ("r_s", {"under_score"}),
                    ("%%", set()), ("p%e", set()), ("p_ain", set()), ("plain", {"plain one"})]:
        got = {x.id for x in t.api.ListResellers(query=q, page_size=1000).resellers}
        assert got == {names[n] for n in want}, (q, got)


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------

def parallel(n, fn):
    """Runs fn(i) for i in range(n) at once; returns their outcomes."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return outcome(fn, i)
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(run, range(n)))


def test_concurrent_creates_of_one_name_make_one(main, world):
    w = world
    name = uniq("race")
    res = parallel(20, lambda i: w.a.api.CreateReseller(username=name, password=f"race-pw-{i:04d}",
                                                        display_name=f"racer {i}"))
    codes = sorted(c for c, _ in res)
    assert codes.count("OK") == 1 and codes.count("ALREADY_EXISTS") == 19, codes
    [(_, won)] = [(c, r) for c, r in res if c == "OK"]
    i = int(won.reseller.display_name.split()[-1])
    assert [x.id for x in w.a.api.ListResellers(query=name).resellers] == [won.reseller.id]
    main.login(w.a.slug, name, f"race-pw-{i:04d}")
    slug = uniq("race")
    res = parallel(20, lambda i: main.pa.CreateTenant(slug=slug, name=f"Race {i}", admin_username="boss",
                                                      admin_password="race-pw-123456"))
    codes = sorted(c for c, _ in res)
    assert codes.count("OK") == 1 and codes.count("ALREADY_EXISTS") == 19, codes
    assert main.psql(f"SELECT count(*) FROM frontdesk.tenants WHERE slug = '{slug}'") == "1"
    assert main.psql(f"SELECT count(*) FROM frontdesk.accounts a JOIN frontdesk.tenants t "
                     f"ON t.id = a.tenant_id WHERE t.slug = '{slug}'") == "1"


def test_concurrent_refreshes_of_one_token(main, world):
    w = world
    lr = main.login(w.a.slug, w.r2.username, w.r2.pw)
    res = parallel(10, lambda i: main.anon.Refresh(refresh_token=lr.refresh_token))
    codes = [c for c, _ in res]
    assert set(codes) <= {"OK", "UNAUTHENTICATED"}, codes
    oks = [r for c, r in res if c == "OK"]
    assert len(oks) <= 1, codes
    for r in oks:
        main.secrets.append(r.refresh_token)
        # The others presented a used token: the family is revoked.
        assert code_of(main.anon.Refresh, refresh_token=r.refresh_token) == "UNAUTHENTICATED"


def test_concurrent_idempotent_creates_return_one_result(main, world):
    w = world
    key, name = str(uuid.uuid4()), uniq("same")
    res = parallel(10, lambda i: w.a.api.CreateApiKey(name=name, scopes=[scope("lines_read")],
                                                      idempotency_key=key))
    codes = [c for c, _ in res]
    assert codes == ["OK"] * 10, res
    assert len({r.api_key.id for _, r in res}) == 1
    main.secrets += [r.secret for _, r in res if r.secret]
    assert sum(1 for _, r in res if r.secret) >= 1
    assert main.psql(f"SELECT count(*) FROM frontdesk.api_keys WHERE name = '{name}'") == "1"


def six_at_once(fn, rounds=3):
    """Six identical calls released together, `rounds` times (each round its
    own request); returns the outcomes of each round."""
    return [parallel(6, lambda i, r=r: fn(r)) for r in range(rounds)]


def test_six_identical_idempotent_creates_answer_the_first_result(main, world):
    """Issue 12, item 2: for each idempotent method of authd, six identical
    requests at once, arranged so that running one a second time would fail
    (the slug or the username is then taken) or differ (another key id): all
    six answer the first result, with one effect (one row, one audit event)."""
    w = world
    # CreateTenant: a second run would find the slug taken.
    reqs = [dict(slug=uniq("six"), name="Six", admin_username="boss", admin_password="six-pw-12345",
                 idempotency_key=str(uuid.uuid4())) for _ in range(3)]
    for req, res in zip(reqs, six_at_once(lambda r: main.pa.CreateTenant(**reqs[r]))):
        assert [c for c, _ in res] == ["OK"] * 6, res
        assert len({(x.tenant.id, x.admin.id) for _, x in res}) == 1, res
        assert len({x.SerializeToString() for _, x in res}) == 1
        tid = res[0][1].tenant.id
        assert main.psql(f"SELECT count(*) FROM frontdesk.tenants WHERE slug = '{req['slug']}'") == "1"
        assert main.psql(f"SELECT count(*) FROM frontdesk.accounts WHERE tenant_id = {tid}") == "1"
        assert main.psql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tid} "
                         f"AND action = 'tenant.create'") == "1"
    # CreateReseller: a second run would find the username taken.
    reqs = [dict(username=uniq("six"), password="six-pw-12345", display_name="Six",
                 idempotency_key=str(uuid.uuid4())) for _ in range(3)]
    for req, res in zip(reqs, six_at_once(lambda r: w.a.api.CreateReseller(**reqs[r]))):
        assert [c for c, _ in res] == ["OK"] * 6, res
        assert len({x.SerializeToString() for _, x in res}) == 1, res
        rid = res[0][1].reseller.id
        assert main.psql(f"SELECT count(*) FROM frontdesk.accounts WHERE tenant_id = {w.a.id} "
                         f"AND username = '{req['username']}'") == "1"
        assert main.psql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {w.a.id} "
                         f"AND action = 'reseller.create' AND target = 'account:{rid}'") == "1"
    # CreateApiKey: a second run would make another key (another id and secret).
    reqs = [dict(name=uniq("six"), scopes=[scope("lines_read")], idempotency_key=str(uuid.uuid4()))
            for _ in range(3)]
    for req, res in zip(reqs, six_at_once(lambda r: w.a.api.CreateApiKey(**reqs[r]))):
        assert [c for c, _ in res] == ["OK"] * 6, res
        assert len({x.api_key.SerializeToString() for _, x in res}) == 1, res
        secrets = [x.secret for _, x in res if x.secret]
        main.secrets += secrets
        assert len(secrets) == 1, "one execution, so one secret shown"
        kid = res[0][1].api_key.id
        assert main.psql(f"SELECT count(*) FROM frontdesk.api_keys WHERE tenant_id = {w.a.id} "
                         f"AND name = '{req['name']}'") == "1"
        assert main.psql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {w.a.id} "
                         f"AND action = 'api_key.create' AND target = 'api_key:{kid}'") == "1"
    # The same key with another request: FAILED_PRECONDITION, nothing made.
    before = main.counts()
    other = dict(reqs[0], name=uniq("other"))
    assert code_of(w.a.api.CreateApiKey, **other) == "FAILED_PRECONDITION"
    assert main.counts() == before


# ---------------------------------------------------------------------------
# Failed logins: rate limits
# ---------------------------------------------------------------------------

RL_ACCOUNT, RL_SOURCE, RL_WINDOW = 3, 6, 3
RETRY = re.compile(r"retry in ([0-9]+) ?s")


@pytest.fixture(scope="module")
def rl():
    a = platform({"FRONTDESK_LOGIN_FAILURES_PER_ACCOUNT": str(RL_ACCOUNT),
                  "FRONTDESK_LOGIN_FAILURES_PER_SOURCE": str(RL_SOURCE),
                  "FRONTDESK_LOGIN_WINDOW": str(RL_WINDOW)})
    try:
        a.t = a.tenant()
        a.users = [a.reseller(a.t, a.t.api) for _ in range(6)]
        a.portal = a.api_key(a.t.api, scopes=[scope("forward_client_address")]).api
        a.plain_key = a.api_key(a.t.api, scopes=[scope("resellers_read")]).api
        a.last_peer_failure = 0.0
    except Exception:
        a.close()
        raise
    yield a
    assert a.close() == 0, a.log()[-4000:]


def quiet(rl):
    """Waits until the peer's (127.0.0.1's) windows have passed."""
    left = rl.last_peer_failure + RL_WINDOW + 0.5 - time.time()
    if left > 0:
        time.sleep(left)


def attempt(rl, user, password, via=None, address=""):
    return outcome((via or rl.anon).Login, tenant_slug=rl.t.slug, username=user, password=password,
                   client_address=address)


def retry_in(details):
    m = RETRY.search(details)
    assert m, f"RESOURCE_EXHAUSTED should say when to retry: {details}"
    return int(m.group(1))


def test_failed_logins_limited_per_account_then_reset(rl):
    quiet(rl)
    v = rl.users[0]
    for _ in range(RL_ACCOUNT):
        assert attempt(rl, v.username, "wrong-password")[0] == "UNAUTHENTICATED"
    rl.last_peer_failure = time.time()
    got, msg = attempt(rl, v.username, v.pw)              # the right password
    assert got == "RESOURCE_EXHAUSTED", (got, msg)
    n = retry_in(msg)
    assert 1 <= n <= RL_WINDOW + 1, msg
    assert attempt(rl, v.username, "wrong-password")[0] == "RESOURCE_EXHAUSTED"
    start = time.time()
    wait_code(lambda: rl.anon.Login(tenant_slug=rl.t.slug, username=v.username, password=v.pw),
              "OK", RL_WINDOW + 3, interval=0.25)
    assert time.time() - start >= n - 1.5, "unlocked long before the announced time"


def test_a_success_clears_the_account_counter(rl):
    v = rl.users[1]
    for _ in range(2):
        for _ in range(RL_ACCOUNT - 1):
            assert attempt(rl, v.username, "wrong", rl.portal, "192.0.2.21")[0] == "UNAUTHENTICATED"
        got, what = attempt(rl, v.username, v.pw, rl.portal, "192.0.2.21")
        assert got == "OK", (got, what)
        rl.secrets += [what.refresh_token]


def test_a_stranger_cannot_lock_an_account_out(rl):
    v = rl.users[2]
    for _ in range(RL_ACCOUNT):
        assert attempt(rl, v.username, "guess", rl.portal, "203.0.113.66")[0] == "UNAUTHENTICATED"
    for pw in ["guess", v.pw]:                    # the attacker learns nothing more
        got, msg = attempt(rl, v.username, pw, rl.portal, "203.0.113.66")
        assert got == "RESOURCE_EXHAUSTED", (got, msg)
        retry_in(msg)
    # The owner, from elsewhere (forwarded by the portal, or directly): in.
    got, what = attempt(rl, v.username, v.pw, rl.portal, "198.51.100.7")
    assert got == "OK", (got, what)
    quiet(rl)
    got, what = attempt(rl, v.username, v.pw)
    assert got == "OK", (got, what)


def test_failed_logins_limited_per_source(rl):
    for i in range(RL_SOURCE):
        got, _ = attempt(rl, f"nobody-{i}", "wrong", rl.portal, "203.0.113.77")
        assert got == "UNAUTHENTICATED", (i, got)
    for v in rl.users[3:5]:                       # any account, even with its password
        got, msg = attempt(rl, v.username, v.pw, rl.portal, "203.0.113.77")
        assert got == "RESOURCE_EXHAUSTED", (got, msg)
        retry_in(msg)
    got, what = attempt(rl, rl.users[3].username, rl.users[3].pw, rl.portal, "203.0.113.78")
    assert got == "OK", (got, what)


@pytest.mark.parametrize("via", ["no credential", "a key without forward_client_address",
                                 "a reseller's token"])
def test_client_address_is_ignored_without_the_scope(rl, via):
    """Varying client_address must not spread one peer's failures over many sources."""
    quiet(rl)
    v = rl.users[5]
    api = {"no credential": rl.anon, "a key without forward_client_address": rl.plain_key,
           "a reseller's token": rl.users[4].api}[via]
    for i in range(RL_ACCOUNT):
        got, _ = attempt(rl, v.username, "wrong", api, f"198.51.100.{i + 1}")
        assert got == "UNAUTHENTICATED", (i, got)
    rl.last_peer_failure = time.time()
    got, msg = attempt(rl, v.username, v.pw, api, "198.51.100.200")
    assert got == "RESOURCE_EXHAUSTED", (via, got, msg)


def test_another_tenants_portal_cannot_forward_addresses(rl):
    """A forward_client_address key is trusted for logins into its own tenant
    only: another tenant's portal rotating addresses gets the peer's counter."""
    quiet(rl)
    other = rl.tenant()
    portal = rl.api_key(other.api, scopes=[scope("forward_client_address")]).api
    v = rl.reseller(rl.t, rl.t.api)
    for i in range(RL_ACCOUNT):
        got, _ = attempt(rl, v.username, "wrong", portal, f"198.51.100.{50 + i}")
        assert got == "UNAUTHENTICATED", (i, got)
    rl.last_peer_failure = time.time()
    got, msg = attempt(rl, v.username, v.pw, portal, "198.51.100.99")
    assert got == "RESOURCE_EXHAUSTED", (got, msg)


def test_parallel_guesses_are_bounded_by_the_limit(rl):
    v = rl.users[3]
    res = parallel(20, lambda i: rl.portal.Login(tenant_slug=rl.t.slug, username=v.username,
                                                 password=f"guess-{i}", client_address="203.0.113.99"))
    codes = [c for c, _ in res]
    assert set(codes) <= {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}, codes
    assert codes.count("UNAUTHENTICATED") <= RL_ACCOUNT, codes


def test_default_cache_refuses_a_revoked_key_within_5_s(rl):
    """`rl` runs with the default FRONTDESK_AUTH_CACHE_MS (4000)."""
    k = rl.api_key(rl.t.api)
    for _ in range(3):
        k.api.WhoAmI()                            # cached now
    rl.t.api.RevokeApiKey(api_key_id=k.id)
    took = wait_code(k.api.WhoAmI, "UNAUTHENTICATED", 6.0)
    assert took <= 5.0, took


def test_default_per_account_limit(main, world):
    """FRONTDESK_LOGIN_FAILURES_PER_ACCOUNT defaults to 10."""
    w = world
    portal = main.api_key(w.a.api, scopes=[scope("forward_client_address")]).api
    v = main.reseller(w.a, w.a.api)

    def go(pw, addr):
        return outcome(portal.Login, tenant_slug=w.a.slug, username=v.username, password=pw,
                       client_address=addr)
    for i in range(10):
        assert go("wrong", "192.0.2.50")[0] == "UNAUTHENTICATED", i
    got, msg = go(v.pw, "192.0.2.50")
    assert got == "RESOURCE_EXHAUSTED", (got, msg)
    assert 1 <= retry_in(msg) <= 301
    assert go(v.pw, "192.0.2.51")[0] == "OK"


# ---------------------------------------------------------------------------
# Replicas and signing-key rotation
# ---------------------------------------------------------------------------

def test_a_second_replica_shares_keys_sessions_and_revocations(main, world):
    w = world
    rep = Authd(MAIN_ENV, db=main.db)
    try:
        other = rep.anon
        assert other.with_token(w.a.token).WhoAmI().caller.account_id == w.a.root
        lr = rep.login(w.a.slug, w.r2.username, w.r2.pw)
        main.secrets += rep.secrets
        assert jwt_parts(lr.access_token)[0]["kid"] == jwt_parts(w.a.token)[0]["kid"]
        assert main.as_(lr.access_token).WhoAmI().caller.account_id == w.r2.id
        # A refresh token rotated on one replica, replayed on the other.
        r = other.Refresh(refresh_token=lr.refresh_token)
        main.secrets.append(r.refresh_token)
        assert code_of(main.anon.Refresh, refresh_token=lr.refresh_token) == "UNAUTHENTICATED"
        assert code_of(other.Refresh, refresh_token=r.refresh_token) == "UNAUTHENTICATED"
        # A key revoked through one is refused by the other.
        k = main.api_key(w.a.api)
        assert other.with_token(k.secret).WhoAmI().caller.api_key_id == k.id
        w.a.api.RevokeApiKey(api_key_id=k.id)
        wait_code(other.with_token(k.secret).WhoAmI, "UNAUTHENTICATED", REFUSED_WITHIN)
    finally:
        assert rep.close() == 0, rep.log()[-4000:]


def test_signing_key_rotation_keeps_earlier_tokens_valid(rot):
    early = rot.login(rot.t.slug, rot.t.username, rot.t.pw)
    kid_a = jwt_parts(early.access_token)[0]["kid"]
    [signing] = [k for k in rot.anon.GetVerificationKeys().keys if k.kid == kid_a]
    # Once the key has signed for FRONTDESK_SIGNING_KEY_ROTATE seconds, new
    # tokens carry another kid (rotating on a timer or at the next signature).
    time.sleep(max(0.0, signing.created_at + ROT_ROTATE + 0.5 - time.time()))
    deadline = signing.created_at + ROT_ROTATE + 5
    while True:
        late = rot.login(rot.t.slug, rot.t.username, rot.t.pw)
        if jwt_parts(late.access_token)[0]["kid"] != kid_a:
            break
        assert time.time() < deadline, f"{kid_a} still signs {time.time() - signing.created_at:.1f} s " \
                                       f"after it was made (rotate every {ROT_ROTATE} s)"
        time.sleep(0.5)
    kid_b = jwt_parts(late.access_token)[0]["kid"]
    assert kid_b != kid_a
    keys = rot.anon.GetVerificationKeys()
    [signing] = [k for k in keys.keys if k.signing]
    assert signing.kid == kid_b and signing.retire_at == 0
    assert len(keys.keys) >= 2
    [old] = [k for k in keys.keys if k.kid == kid_a]
    assert not old.signing
    assert old.retire_at >= early.access_token_expires_at, (old, early.access_token_expires_at)
    assert signing.created_at - old.created_at >= ROT_ROTATE - 1, "rotated sooner than configured"
    # Both tokens verify: with authd, and with the published keys.
    assert rot.as_(early.access_token).WhoAmI().caller.account_id == early.caller.account_id
    assert rot.as_(late.access_token).WhoAmI().caller.account_id == late.caller.account_id
    assert decode(early.access_token, keys)["sub"] == decode(late.access_token, keys)["sub"]
    # Refresh works across the rotation and signs with the new key.
    r = rot.anon.Refresh(refresh_token=early.refresh_token)
    assert jwt_parts(r.access_token)[0]["kid"] == kid_b


def secret_part(s):
    """The part of a credential that must never be logged."""
    if s.startswith(("fdk_", "fdr_")):
        return s.split("_", 3)[3]
    return s


def test_secrets_never_reach_the_log(main, world):
    log = main.log()
    assert log, "authd writes a log"
    leaked = [s for s in set(main.secrets) if s and secret_part(s) in log]
    assert not leaked, leaked


def test_secrets_never_reach_the_audit_trail(main, world):
    """Every column of every event of this file's many calls (logins, resets,
    keys, refreshes), searched for every password, token and key it used."""
    rows = main.psql("SELECT e::text FROM frontdesk.audit_events e")
    assert int(main.psql("SELECT count(*) FROM frontdesk.audit_events")) >= 15
    leaked = [s[:10] for s in set(main.secrets) if s and len(secret_part(s)) >= 8
              and secret_part(s) in rows]
    assert not leaked, leaked


def test_zz_access_token_expires(rot):
    """Last in the file: the token `rot` issued at start-up has run out by now."""
    first = rot.first
    claims = jwt_parts(first.access_token)[1]
    assert claims["exp"] - claims["iat"] == ROT_TTL
    assert first.access_token_expires_at == claims["exp"]
    if time.time() < claims["exp"] - 2:
        assert rot.as_(first.access_token).WhoAmI().caller.account_id == first.caller.account_id
    wait_code(rot.as_(first.access_token).WhoAmI, "UNAUTHENTICATED",
              claims["exp"] + ROT_SKEW + 3 - time.time(), interval=0.25)
    assert time.time() >= claims["exp"] - 1, "refused before it expired"
    # Its refresh token outlives it.
    r = rot.anon.Refresh(refresh_token=first.refresh_token)
    assert rot.as_(r.access_token).WhoAmI().caller.account_id == first.caller.account_id


def test_old_failed_login_counters_are_pruned(main):
    """Counters whose window ended long ago go away as people log in, so the
    table holds recent attacks only."""
    main.psql("INSERT INTO frontdesk.login_failures (key, failures, window_start)"
              " SELECT 'src:198.18.0.' || g, 3, now() - interval '2 days' FROM generate_series(1, 150) g")
    old = "SELECT count(*) FROM frontdesk.login_failures WHERE key LIKE 'src:198.18.0.%'"
    assert main.psql(old).strip() == "150"
    main.login("platform", PLATFORM_USER, PLATFORM_PW)
    assert main.psql(old).strip() == "50"            # at most 100 per login
    main.login("platform", PLATFORM_USER, PLATFORM_PW)
    assert main.psql(old).strip() == "0"


# ---------------------------------------------------------------------------
# Migration 0016: authd's idempotency keys in frontdesk.idempotency
# ---------------------------------------------------------------------------

def migrate(db_name, migrations_dir=None):
    env = dict(os.environ, FRONTDESK_ADMIN_DATABASE_URL=f"host={fdtest.PGHOST} port={fdtest.PGPORT} "
                                                         f"dbname={db_name} user=postgres")
    if migrations_dir:
        env["FRONTDESK_MIGRATIONS_DIR"] = str(migrations_dir)
    r = subprocess.run([fdtest.binary("frontdesk"), "migrate"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_keys_stored_before_0016_still_answer_their_first_result(tmp_path):
    """A create made before migration 0016 (its key in auth_idempotency) and
    retried after it answers its first result from frontdesk.idempotency;
    the same key with another request is still refused. The rows keep their
    tenant, hash and answer; their key is what fd_idem_make makes."""
    before = tmp_path / "migrations"
    before.mkdir()
    source = os.path.join(fdtest.SOURCE, "migrations")
    for f in sorted(os.listdir(source)):
        if f.endswith(".sql") and f < "0016":
            os.symlink(os.path.join(source, f), before / f)
    name = "t_" + uuid.uuid4().hex[:12]
    fdtest.psql(f"CREATE DATABASE {name} TEMPLATE template0")
    db = types.SimpleNamespace(name=name, url=f"host={fdtest.PGHOST} port={fdtest.PGPORT} dbname={name}")
    a = None
    try:
        migrate(name, before)
        fdtest.Database.bootstrap(db, PLATFORM_USER, PLATFORM_PW)
        pa_id = fdtest.psql("SELECT id FROM frontdesk.accounts WHERE tenant_id = 0", db=name).strip()
        key = str(uuid.uuid4())
        req = A.CreateTenantRequest(slug=uniq("old"), name="Made before 0016", admin_username="boss",
                                    admin_password="old-pw-123456", idempotency_key=key)
        # The tenant the first call made (ids far above anything this database makes).
        first = A.CreateTenantResponse(
            tenant=A.Tenant(id=900001, slug=req.slug, name=req.name, created_at=1700000000),
            admin=A.Reseller(id=900002, tenant_id=900001, username="boss", display_name=""))
        # authd's fingerprint: keyed BLAKE2b of the packed request.
        h = hashlib.blake2b(req.SerializeToString(), key=bytes.fromhex(fdtest.TEST_HASH_KEY),
                            digest_size=32).hexdigest()
        other = A.CreateResellerResponse(reseller=A.Reseller(id=300, tenant_id=7, username="r"))
        fdtest.psql("INSERT INTO frontdesk.auth_idempotency (tenant_id, method, key, request_hash, response) "
                    f"VALUES (0, 'CreateTenant/{pa_id}', '{key}', '\\x{h}', "
                    f"'\\x{first.SerializeToString().hex()}'), "
                    f"(7, 'CreateReseller/42', 'k2', '\\x{'ab' * 32}', "
                    f"'\\x{other.SerializeToString().hex()}')", db=name)
        migrate(name)
        assert fdtest.psql("SELECT to_regclass('frontdesk.auth_idempotency') IS NULL", db=name).strip() == "t"
        rows = fdtest.psql("SELECT tenant_id, service, idem_key, encode(request_hash, 'hex'), result_id,"
                           " encode(response, 'hex') FROM frontdesk.idempotency ORDER BY tenant_id",
                           db=name).split()
        assert rows == [f"0|authd|CreateTenant/acct:{pa_id}/{key}|{h}|900001|{first.SerializeToString().hex()}",
                        f"7|authd|CreateReseller/acct:42/k2|{'ab' * 32}|300|{other.SerializeToString().hex()}"], rows
        a = Authd(db=db)
        a.start_platform()
        again = a.pa.CreateTenant(req)
        assert again.SerializeToString() == first.SerializeToString(), again
        assert fdtest.psql("SELECT count(*) FROM frontdesk.tenants WHERE id > 0", db=name).strip() == "0"
        changed = A.CreateTenantRequest()
        changed.CopyFrom(req)
        changed.name = "Another"
        assert code_of(a.pa.CreateTenant, changed) == "FAILED_PRECONDITION"
        assert fdtest.psql("SELECT count(*) FROM frontdesk.tenants WHERE id > 0", db=name).strip() == "0"
    finally:
        if a is not None:
            a.close()
        fdtest.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)
