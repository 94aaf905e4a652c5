"""billingd end to end: the credit ledger through the real binaries (authd for
identities and tokens, billingd for credits) over loopback, on one migrated
database, with checks of the books in SQL as postgres.

What must hold (DESIGN.md, Tenancy and Security rules; api/frontdesk/v1/billing.proto):
- accounts: one per reseller (the root's included), the issuance account (minus
  everything minted, the only negative one) and the derived consumption
  account; a tenant's accounts always sum to 0 and every balance equals the sum
  of its ledger entries;
- money: balances never go negative, whatever the concurrency; not enough
  credits is FAILED_PRECONDITION saying the balance and the amount needed;
- idempotency: a replay returns the first entry and moves nothing more, also
  when 8 clients send it at once; another request under the same key is
  FAILED_PRECONDITION; keys are scoped to tenant, method and caller;
- who: Mint for tenant and platform admins, Transfer down the tree (anywhere
  inside the tenant for its admins), Charge and Refund for linesd's service
  token only; another tenant's ids, or ids outside a reseller's subtree, answer
  NOT_FOUND and move nothing;
- the ledger is append-only, even for the service's own role and the owner;
- bad input answers INVALID_ARGUMENT naming the field and stores nothing;
- a suspended reseller's credentials are refused within 5 s.

Processes: one database, one authd and one billingd (`plat`) for the whole file.
The mixed workload's size can be changed with FD_BILLING_WORKLOAD_OPS."""
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdtest  # noqa: E402
import fdapi  # noqa: E402
from fdapi import Auth, Billing, code_of, expect, outcome, scope  # noqa: E402

A = fdapi.auth_pb2
B = fdapi.billing_pb2
C = fdapi.common_pb2

PLATFORM_USER = "admin"
PLATFORM_PW = "platform-admin-pw-1"
LINESD_SECRET = "linesd-secret-" + uuid.uuid4().hex          # >= 32 characters
EDGED_SECRET = "edged-secret-" + uuid.uuid4().hex
MAX_PER_CALL = 1_000_000_000                                 # FRONTDESK_MAX_CREDITS_PER_CALL default
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

CACHE_MS = 1000                      # FRONTDESK_AUTH_CACHE_MS of billingd
REFUSED_WITHIN = 5.0                 # the contract: a suspension is seen within 5 s

WORKLOAD_OPS = int(os.environ.get("FD_BILLING_WORKLOAD_OPS", "10000"))
WORKLOAD_CLIENTS = 16
WORKLOAD_SEED = int(os.environ.get("FD_BILLING_WORKLOAD_SEED", "20261125"))

SUB = A.RESELLER_PERMISSION_CREATE_SUBRESELLERS
ACTIVE = A.RESELLER_STATUS_ACTIVE
SUSPENDED = A.RESELLER_STATUS_SUSPENDED

RESELLER = B.ACCOUNT_KIND_RESELLER
ISSUANCE = B.ACCOUNT_KIND_ISSUANCE
CONSUMPTION = B.ACCOUNT_KIND_CONSUMPTION
MINT = B.LEDGER_ENTRY_KIND_MINT
TRANSFER = B.LEDGER_ENTRY_KIND_TRANSFER
CHARGE = B.LEDGER_ENTRY_KIND_CHARGE
REFUND = B.LEDGER_ENTRY_KIND_REFUND
CREATED = B.CHARGE_REASON_LINE_CREATED
EXTENDED = B.CHARGE_REASON_LINE_EXTENDED

CONTROL = ["a\x01b", "a\nb", "a\x7fb", "a\x1b[31mred"]


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ikey():
    return "idem-" + uuid.uuid4().hex


def ns(**kw):
    return types.SimpleNamespace(**kw)


def ref(r):
    """An AccountRef as a comparable pair."""
    return (r.kind, r.reseller_id)


def res(i):
    return (RESELLER, i)


ISS = (ISSUANCE, 0)
CON = (CONSUMPTION, 0)


def numbers(text):
    return {int(x) for x in re.findall(r"-?\d+", text)}


def says_balance_and_need(msg, balance, need):
    return balance in numbers(msg) and need in numbers(msg) and "balance" in msg.lower()


def wait_code(fn, code, timeout, interval=0.1):
    """Polls fn until it answers `code`; returns the seconds it took."""
    start = time.time()
    while True:
        got, what = outcome(fn)
        if got == code:
            return time.time() - start
        if time.time() - start > timeout:
            raise AssertionError(f"still {got} after {timeout:.1f}s (want {code}): {what}")
        time.sleep(interval)


def run_psql(db, sql):
    """psql as postgres: (return code, stdout, stderr), without raising."""
    cmd = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", fdtest.PGHOST, "-p",
           str(fdtest.PGPORT), "-U", "postgres", "-d", db, "-c", sql]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


# ---------------------------------------------------------------------------
# The platform: authd and billingd on one database.
# ---------------------------------------------------------------------------

AUTHD_ENV = {
    "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
    "FRONTDESK_SERVICE_SECRETS": f"linesd={LINESD_SECRET},edged={EDGED_SECRET}",
    "FRONTDESK_LOGIN_FAILURES_PER_SOURCE": "500",
}
BILLINGD_ENV = {
    "FRONTDESK_AUTH_CACHE_MS": str(CACHE_MS),
    # 16: each completion queue (one per CPU) has its own share of the
    # threads, and the six calls held behind a lock may all land on one.
    "FRONTDESK_BILLINGD_THREADS": "16",
    "FRONTDESK_BILLINGD_DB_POOL": "16",
}


class Platform:
    def __init__(self):
        self.db = fdtest.Database()
        self.procs = []
        self.channels = []
        self.secrets = [PLATFORM_PW, LINESD_SECRET]
        try:
            self.db.bootstrap(PLATFORM_USER, PLATFORM_PW)
            self.authd = self.start("authd", AUTHD_ENV)
            self.billingd = self.start("billingd", BILLINGD_ENV)
            self.ach = self.channel(self.authd)
            self.bch = self.channel(self.billingd)
            self.anon = Auth(self.ach)
            self.nobody = Billing(self.bch)
            r = self.login("platform", PLATFORM_USER, PLATFORM_PW)
            self.pa = self.person(r)
            self.svc = self.service_token()
        except Exception:
            self.close()
            raise

    def start(self, name, env):
        s = fdtest.Service(name, self.db.url, env=env)
        self.procs.append(s)
        s.wait_serving()
        return s

    def channel(self, svc):
        ch = svc.channel()
        self.channels.append(ch)
        return ch

    def close(self):
        for ch in self.channels:
            ch.close()
        codes = {}
        for s in reversed(self.procs):
            codes[s.name + str(s.port)] = s.stop()
        self.db.drop()
        return codes

    # --- people and services --------------------------------------------

    def login(self, slug, username, password):
        r = self.anon.Login(tenant_slug=slug, username=username, password=password)
        self.secrets += [r.refresh_token, r.access_token.split(".")[2]]
        return r

    def person(self, login):
        t = login.access_token
        return ns(token=t, login=login, caller=login.caller, account=login.caller.account_id,
                  auth=self.anon.with_token(t), bill=Billing(self.bch, t))

    def key(self, who, **kw):
        """An API key of `who` (kw: scopes, reseller_id...)."""
        r = who.auth.CreateApiKey(name=uniq("key"), **kw)
        self.secrets.append(r.secret)
        return ns(id=r.api_key.id, secret=r.secret, auth=self.anon.with_token(r.secret),
                  bill=Billing(self.bch, r.secret))

    def service_token(self, audience="billingd", scopes=()):
        r = self.anon.IssueServiceToken(service_name="linesd", secret=LINESD_SECRET,
                                        audience=audience, scopes=[scope(s) for s in scopes])
        self.secrets.append(r.token.split(".")[2])
        return Billing(self.bch, r.token)

    def tenant(self):
        slug = uniq("t")
        pw = "boss-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = self.pa.auth.CreateTenant(slug=slug, name=f"Tenant {slug}", admin_username="boss",
                                      admin_password=pw, admin_display_name="The Boss")
        p = self.person(self.login(slug, "boss", pw))
        p.id = p.root = r.admin.id
        p.tenant = r.tenant.id
        p.slug = slug
        return p

    def reseller(self, t, creator=None, parent_id=0, perms=(SUB,)):
        """A reseller of tenant t, created by `creator` (default: t's admin)."""
        username = uniq("r")
        pw = "res-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = (creator or t).auth.CreateReseller(parent_id=parent_id, username=username,
                                               password=pw, display_name=username,
                                               permissions=list(perms))
        p = self.person(self.login(t.slug, username, pw))
        p.id = r.reseller.id
        p.tenant = t.tenant
        p.username = username
        p.pw = pw
        return p

    # --- the books, read as postgres --------------------------------------

    def sql(self, q):
        return fdtest.psql(q, db=self.db.name).strip()

    def rows(self, q):
        out = self.sql(q)
        return [line.split("|") for line in out.split("\n")] if out else []

    def balances(self, tenant_id):
        """{account_id: balance} of credit_balances (0 = issuance)."""
        return {int(a): int(b) for a, b in self.rows(
            f"SELECT account_id, balance FROM frontdesk.credit_balances WHERE tenant_id = {tenant_id}")}

    def entries(self, tenant_id=None):
        w = f"WHERE tenant_id = {tenant_id}" if tenant_id is not None else ""
        return int(self.sql(f"SELECT count(*) FROM frontdesk.ledger_entries {w}"))

    def books(self, *tenants):
        """What a refused call must not change: balances (an account without a
        row reads 0, so a row of 0 is no change) and entry counts."""
        return ([{a: b for a, b in self.balances(t).items() if b} for t in tenants],
                [self.entries(t) for t in tenants], self.entries())

    def sql_balance(self, tenant_id, account_id):
        return self.balances(tenant_id).get(account_id, 0)

    def log(self, svc):
        with open(svc.log_path, errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def plat():
    p = Platform()
    yield p
    codes = p.close()
    assert all(c == 0 for c in codes.values()), (codes, p.log(p.billingd)[-4000:])


@pytest.fixture(scope="module")
def world(plat):
    """Tenant A: root → r1 → r1a → r1aa; root → r2. Tenant B: root → b1.
    API keys: ka (A's admin), kb (B's admin), kr1 (r1). Every reseller and
    both roots get credits; B has a charge `b_charge`."""
    a = plat.tenant()
    b = plat.tenant()
    r1 = plat.reseller(a)
    r1a = plat.reseller(a, r1)
    r1aa = plat.reseller(a, r1a)
    r2 = plat.reseller(a)
    b1 = plat.reseller(b)
    for t, who, n in [(a, 0, 100000), (a, r1.id, 10000), (a, r1a.id, 10000), (a, r1aa.id, 10000),
                      (a, r2.id, 10000), (b, 0, 100000), (b, b1.id, 10000)]:
        t.bill.MintCredits(reseller_id=who, amount=n, idempotency_key=ikey())
    b_charge = plat.svc.Charge(tenant_id=b.tenant, reseller_id=b1.id, amount=5, reason=CREATED,
                               line_id=1, idempotency_key=ikey()).entry
    a_charge = plat.svc.Charge(tenant_id=a.tenant, reseller_id=r2.id, amount=5, reason=CREATED,
                               line_id=2, idempotency_key=ikey()).entry
    return ns(a=a, b=b, r1=r1, r1a=r1a, r1aa=r1aa, r2=r2, b1=b1,
              ka=plat.key(a), kb=plat.key(b), kr1=plat.key(r1),
              b_charge=b_charge, a_charge=a_charge)


def all_entries(bill, **kw):
    """Every entry a ListLedger shows, following the pages."""
    out, token, pages = [], "", 0
    while True:
        r = bill.ListLedger(page_token=token, **kw)
        out += list(r.entries)
        pages += 1
        assert pages < 1000, "paging does not end"
        if not r.next_page_token:
            return out
        token = r.next_page_token


# ---------------------------------------------------------------------------
# Accounts and entries as documented
# ---------------------------------------------------------------------------

def test_accounts_entries_and_balances_as_documented(plat):
    t = plat.tenant()
    p = plat.reseller(t)
    c = plat.reseller(t, p)
    svc = plat.svc
    now = time.time()

    # Nothing yet: every account reads 0.
    own = t.bill.GetBalance().account
    assert (own.tenant_id, own.kind, own.reseller_id, own.balance) == (t.tenant, RESELLER, t.root, 0), own
    for kind in (ISSUANCE, CONSUMPTION):
        acc = t.bill.GetBalance(kind=kind).account
        assert (acc.tenant_id, acc.kind, acc.reseller_id, acc.balance) == (t.tenant, kind, 0, 0), acc
    acc = t.bill.GetBalance(reseller_id=c.id).account
    assert (acc.kind, acc.reseller_id, acc.balance, acc.updated_at) == (RESELLER, c.id, 0, 0), acc
    assert c.bill.GetBalance().account.reseller_id == c.id

    m = t.bill.MintCredits(reseller_id=0, amount=1000, note="first é ☃", idempotency_key=ikey()).entry
    assert m.id > 0 and m.tenant_id == t.tenant and m.kind == MINT, m
    assert (ref(m.from_account), ref(m.to_account)) == (ISS, res(t.root)), m
    assert (m.amount, m.from_balance_after, m.to_balance_after) == (1000, -1000, 1000), m
    assert m.note == "first é ☃" and m.actor_account_id == t.root and m.actor_service == "", m
    assert (m.line_id, m.charge_reason, m.refunded_entry_id, m.refunded_amount) == (0, 0, 0, 0), m
    assert abs(m.created_at - now) < 60, m

    tr = t.bill.TransferCredits(to_reseller_id=p.id, amount=300, idempotency_key=ikey()).entry
    assert tr.kind == TRANSFER and (ref(tr.from_account), ref(tr.to_account)) == (res(t.root), res(p.id))
    assert (tr.amount, tr.from_balance_after, tr.to_balance_after) == (300, 700, 300), tr
    assert tr.actor_account_id == t.root and tr.id > m.id

    tr2 = p.bill.TransferCredits(to_reseller_id=c.id, amount=100, note="to c",
                                 idempotency_key=ikey()).entry
    assert (ref(tr2.from_account), ref(tr2.to_account)) == (res(p.id), res(c.id)), tr2
    assert (tr2.from_balance_after, tr2.to_balance_after, tr2.actor_account_id) == (200, 100, p.id)

    ch = svc.Charge(tenant_id=t.tenant, reseller_id=c.id, amount=30, reason=CREATED, line_id=777,
                    note="line 777", idempotency_key=ikey()).entry
    assert ch.kind == CHARGE and (ref(ch.from_account), ref(ch.to_account)) == (res(c.id), CON), ch
    assert (ch.amount, ch.from_balance_after, ch.to_balance_after) == (30, 70, 0), ch
    assert (ch.charge_reason, ch.line_id, ch.refunded_amount) == (CREATED, 777, 0), ch
    assert ch.actor_service == "linesd" and ch.actor_account_id == 0, ch

    rf = svc.Refund(tenant_id=t.tenant, charge_entry_id=ch.id, amount=10, note="partly",
                    idempotency_key=ikey()).entry
    assert rf.kind == REFUND and (ref(rf.from_account), ref(rf.to_account)) == (CON, res(c.id)), rf
    assert (rf.amount, rf.to_balance_after, rf.from_balance_after) == (10, 80, 0), rf
    assert (rf.refunded_entry_id, rf.line_id, rf.actor_service) == (ch.id, 777, "linesd"), rf

    ch2 = svc.Charge(tenant_id=t.tenant, reseller_id=c.id, amount=20, reason=EXTENDED, line_id=778,
                     idempotency_key=ikey()).entry
    assert (ch2.from_balance_after, ch2.charge_reason) == (60, EXTENDED), ch2
    rf2 = svc.Refund(tenant_id=t.tenant, charge_entry_id=ch2.id, amount=0, idempotency_key=ikey()).entry
    assert (rf2.amount, rf2.to_balance_after, rf2.refunded_entry_id) == (20, 80, ch2.id), rf2

    # Balances: root 700, p 200, c 80, issuance -1000, consumption 30 - 10 = 20; sum 0.
    want = {res(t.root): 700, res(p.id): 200, res(c.id): 80, ISS: -1000, CON: 20}
    got = {res(t.root): t.bill.GetBalance(reseller_id=0).account.balance,
           res(p.id): t.bill.GetBalance(reseller_id=p.id).account.balance,
           res(c.id): t.bill.GetBalance(reseller_id=c.id).account.balance,
           ISS: t.bill.GetBalance(kind=ISSUANCE).account.balance,
           CON: t.bill.GetBalance(kind=CONSUMPTION).account.balance}
    assert got == want and sum(got.values()) == 0
    assert t.bill.GetBalance(kind=RESELLER, reseller_id=c.id).account.balance == 80
    assert t.bill.GetBalance(kind=CONSUMPTION).account.updated_at > 0
    for bad in (-1, 4, 99):   # an enum value the contract does not have
        expect("INVALID_ARGUMENT", t.bill.GetBalance, kind=bad)
    assert plat.balances(t.tenant) == {0: -1000, t.root: 700, p.id: 200, c.id: 80}
    # Resellers read their own subtree's balances only, never the tenant's accounts.
    assert p.bill.GetBalance().account.balance == 200
    assert p.bill.GetBalance(reseller_id=c.id).account.balance == 80
    assert c.bill.GetBalance(reseller_id=0).account.balance == 80
    expect("NOT_FOUND", c.bill.GetBalance, reseller_id=p.id)
    expect("NOT_FOUND", p.bill.GetBalance, reseller_id=t.root)
    for kind in (ISSUANCE, CONSUMPTION):
        expect("PERMISSION_DENIED", p.bill.GetBalance, kind=kind)
        expect("PERMISSION_DENIED", c.bill.GetBalance, kind=kind)

    # The ledger, newest first; the charges show what was refunded of them.
    order = [rf2, ch2, rf, ch, tr2, tr, m]
    ids = lambda es: [e.id for e in es]  # noqa: E731
    listed = t.bill.ListLedger().entries
    assert ids(listed) == ids(order), (ids(listed), ids(order))
    by_id = {e.id: e for e in listed}
    assert by_id[ch.id].refunded_amount == 10 and by_id[ch2.id].refunded_amount == 20
    assert by_id[m.id].note == "first é ☃" and by_id[tr2.id].note == "to c"
    assert by_id[rf.id] == rf and by_id[tr.id] == tr and by_id[m.id] == m
    # Resellers see entries touching their subtree only.
    assert ids(p.bill.ListLedger().entries) == ids([rf2, ch2, rf, ch, tr2, tr])
    assert ids(c.bill.ListLedger().entries) == ids([rf2, ch2, rf, ch, tr2])
    # Filters.
    assert ids(t.bill.ListLedger(kinds=[CHARGE]).entries) == ids([ch2, ch])
    assert ids(t.bill.ListLedger(kinds=[MINT, REFUND]).entries) == ids([rf2, rf, m])
    assert ids(t.bill.ListLedger(line_id=777).entries) == ids([rf, ch])
    assert ids(t.bill.ListLedger(reseller_id=c.id).entries) == ids([rf2, ch2, rf, ch, tr2])
    assert ids(t.bill.ListLedger(reseller_id=t.root).entries) == ids([tr, m])
    assert ids(p.bill.ListLedger(reseller_id=c.id, kinds=[REFUND]).entries) == ids([rf2, rf])
    later = int(time.time()) + 3600
    assert not t.bill.ListLedger(created_within=C.TimeRange(start_at=later)).entries
    assert not t.bill.ListLedger(created_within=C.TimeRange(end_at=m.created_at - 1)).entries
    assert ids(t.bill.ListLedger(created_within=C.TimeRange(start_at=m.created_at - 1,
                                                            end_at=later)).entries) == ids(order)
    # Pages: the same entries, in the same order, once each.
    for size in (1, 2, 3):
        assert ids(all_entries(t.bill, page_size=size)) == ids(order), size
    assert ids(all_entries(p.bill, page_size=2)) == ids(order[:-1])
    r = t.bill.ListLedger(page_size=7)
    assert len(r.entries) == 7
    # The platform admin, naming the tenant, sees the same.
    assert ids(plat.pa.bill.ListLedger(tenant_id=t.tenant).entries) == ids(order)


def test_created_at_is_the_second_the_entry_was_made(plat):
    """created_at is Unix seconds: the entry lies in [created_at, created_at + 1),
    so created_within can find it by its own created_at. Entries are made until
    one falls in the second half of a second and one in the first half."""
    t = plat.tenant()
    made = []
    for _ in range(60):
        e = t.bill.MintCredits(reseller_id=0, amount=1, idempotency_key=ikey()).entry
        exact = float(plat.sql(f"SELECT extract(epoch FROM created_at) FROM frontdesk.ledger_entries "
                               f"WHERE tenant_id = {t.tenant} AND id = {e.id}"))
        made.append((e, exact))
        fracs = [x % 1 for _, x in made]
        if min(fracs) < 0.5 <= max(fracs):
            break
        time.sleep(0.043)
    wrong = []
    for e, exact in made:
        listed = t.bill.ListLedger(created_within=C.TimeRange(start_at=e.created_at,
                                                              end_at=e.created_at + 1)).entries
        if e.created_at != int(exact) or e.id not in [x.id for x in listed]:
            wrong.append(dict(id=e.id, created_at=e.created_at, stored=exact,
                              found_by_its_second=e.id in [x.id for x in listed]))
    assert not wrong, wrong


def test_platform_admin_names_the_tenant(plat):
    t = plat.tenant()
    r = plat.reseller(t)
    pa = plat.pa.bill
    e = pa.MintCredits(tenant_id=t.tenant, reseller_id=r.id, amount=50, idempotency_key=ikey()).entry
    assert e.tenant_id == t.tenant and ref(e.to_account) == res(r.id), e
    assert e.actor_account_id == plat.pa.account and e.to_balance_after == 50
    assert pa.GetBalance(tenant_id=t.tenant, reseller_id=r.id).account.balance == 50
    assert pa.GetBalance(tenant_id=t.tenant, kind=ISSUANCE).account.balance == -50
    assert pa.GetBalance(tenant_id=t.tenant, kind=CONSUMPTION).account.balance == 0
    e = pa.TransferCredits(tenant_id=t.tenant, from_reseller_id=r.id, to_reseller_id=t.root,
                           amount=20, idempotency_key=ikey()).entry
    assert (ref(e.from_account), ref(e.to_account), e.from_balance_after) == (res(r.id), res(t.root), 30)
    assert t.bill.GetBalance().account.balance == 20
    before = plat.books(t.tenant)
    # reseller_id is required for a platform admin (it has no account in the tenant).
    got, what = outcome(pa.MintCredits, tenant_id=t.tenant, reseller_id=0, amount=1,
                        idempotency_key=ikey())
    assert got == "INVALID_ARGUMENT" and "reseller_id" in what, (got, what)
    missing = t.tenant + 100000
    for method, kw in [("MintCredits", dict(tenant_id=missing, reseller_id=r.id, amount=1,
                                            idempotency_key=ikey())),
                       ("GetBalance", dict(tenant_id=missing, reseller_id=r.id)),
                       ("GetBalance", dict(tenant_id=missing, kind=ISSUANCE)),
                       ("ListLedger", dict(tenant_id=missing)),
                       ("TransferCredits", dict(tenant_id=missing, from_reseller_id=r.id,
                                                to_reseller_id=t.root, amount=1,
                                                idempotency_key=ikey())),
                       # The platform's own tenant has no such reseller.
                       ("MintCredits", dict(tenant_id=0, reseller_id=r.id, amount=1,
                                            idempotency_key=ikey())),
                       ("GetBalance", dict(tenant_id=0, reseller_id=r.id))]:
        got, what = outcome(getattr(pa, method), **kw)
        assert got in ("NOT_FOUND", "INVALID_ARGUMENT"), (method, kw, got, what)
        if kw.get("tenant_id") == missing:
            assert got == "NOT_FOUND", (method, kw, got, what)
    assert plat.books(t.tenant) == before


def test_who_may_call_what(plat, world):
    w = world
    a = w.a.tenant
    before = plat.books(w.a.tenant, w.b.tenant)
    charge = dict(tenant_id=a, reseller_id=w.r2.id, amount=1, reason=CREATED, line_id=9)
    refund = dict(tenant_id=a, charge_entry_id=w.a_charge.id, amount=1)
    # People (even a platform admin) never Charge or Refund.
    people = {"platform admin": plat.pa.bill, "tenant admin": w.a.bill, "admin key": w.ka.bill,
              "reseller": w.r1.bill, "reseller key": w.kr1.bill}
    for who, bill in people.items():
        for method, kw in [("Charge", charge), ("Refund", refund)]:
            got, what = outcome(getattr(bill, method), idempotency_key=ikey(), **kw)
            assert got == "PERMISSION_DENIED", (who, method, got, what)
    # Resellers do not mint.
    for who, bill in [("reseller", w.r1.bill), ("reseller key", w.kr1.bill), ("leaf", w.r1aa.bill)]:
        for kw in [dict(reseller_id=0), dict(reseller_id=w.r1a.id), dict(reseller_id=w.r1.id)]:
            got, what = outcome(bill.MintCredits, amount=1, idempotency_key=ikey(), **kw)
            assert got == "PERMISSION_DENIED", (who, kw, got, what)
    # linesd's token: Charge and Refund only.
    svc = plat.svc
    for method, kw in [("GetBalance", dict(tenant_id=a, reseller_id=w.r2.id)),
                       ("ListLedger", dict(tenant_id=a)),
                       ("MintCredits", dict(tenant_id=a, reseller_id=w.r2.id, amount=1,
                                            idempotency_key=ikey())),
                       ("TransferCredits", dict(tenant_id=a, from_reseller_id=w.r2.id,
                                                to_reseller_id=w.r1.id, amount=1,
                                                idempotency_key=ikey()))]:
        got, what = outcome(getattr(svc, method), **kw)
        assert got == "PERMISSION_DENIED", (method, got, what)
    # A service token for another audience is not a credential here.
    for aud in ["routerd", "authd", "linesd"]:
        other = plat.service_token(audience=aud)
        for method, kw in [("Charge", charge), ("Refund", refund)]:
            got, what = outcome(getattr(other, method), idempotency_key=ikey(), **kw)
            assert got == "UNAUTHENTICATED", (aud, method, got, what)
    # A token with credits_charge only may not refund.
    only_charge = plat.service_token(scopes=["credits_charge"])
    got, what = outcome(only_charge.Refund, idempotency_key=ikey(), **refund)
    assert got == "PERMISSION_DENIED", (got, what)
    # No credential, or a broken one.
    for md in [None, [("authorization", "Bearer ")], [("authorization", "Bearer garbage")],
               [("authorization", "Bearer " + w.a.token[:-2])],
               [("authorization", "Bearer " + w.a.login.refresh_token)],
               [("authorization", "Bearer " + w.ka.secret[:-1])]]:
        for method in fdapi.billing_method_names():
            got, what = outcome(getattr(plat.nobody, method), metadata=md or [])
            assert got == "UNAUTHENTICATED", (method, md, got, what)
    # API key scopes bound the key.
    lines_only = plat.key(w.r1, scopes=[scope("lines_read")])
    read_only = plat.key(w.r1, scopes=[scope("credits_read")])
    admin_read = plat.key(w.a, scopes=[scope("credits_read")])
    expect("PERMISSION_DENIED", lines_only.bill.GetBalance)
    expect("PERMISSION_DENIED", lines_only.bill.ListLedger)
    expect("PERMISSION_DENIED", lines_only.bill.TransferCredits, to_reseller_id=w.r1a.id, amount=1,
           idempotency_key=ikey())
    assert read_only.bill.GetBalance().account.reseller_id == w.r1.id
    read_only.bill.ListLedger(page_size=1)
    expect("PERMISSION_DENIED", read_only.bill.TransferCredits, to_reseller_id=w.r1a.id, amount=1,
           idempotency_key=ikey())
    expect("PERMISSION_DENIED", admin_read.bill.MintCredits, reseller_id=w.r2.id, amount=1,
           idempotency_key=ikey())
    expect("PERMISSION_DENIED", admin_read.bill.TransferCredits, to_reseller_id=w.r2.id, amount=1,
           idempotency_key=ikey())
    assert plat.books(w.a.tenant, w.b.tenant) == before
    # The genuine service token works.
    e = svc.Charge(idempotency_key=ikey(), **charge).entry
    assert e.kind == CHARGE and e.actor_service == "linesd"
    e2 = only_charge.Charge(idempotency_key=ikey(), **charge).entry
    assert e2.id > e.id


# ---------------------------------------------------------------------------
# Not enough credits, refunds, idempotency
# ---------------------------------------------------------------------------

def test_not_enough_credits_says_balance_and_need(plat, world):
    w = world
    x = plat.reseller(w.a)
    y = plat.reseller(w.a, x)
    w.a.bill.MintCredits(reseller_id=x.id, amount=5, idempotency_key=ikey())
    before = plat.books(w.a.tenant)
    for fn, kw in [(plat.svc.Charge, dict(tenant_id=w.a.tenant, reseller_id=x.id, amount=7,
                                          reason=CREATED, line_id=5)),
                   (x.bill.TransferCredits, dict(to_reseller_id=y.id, amount=7)),
                   (w.a.bill.TransferCredits, dict(from_reseller_id=x.id, to_reseller_id=w.a.root,
                                                   amount=7)),
                   (w.ka.bill.TransferCredits, dict(from_reseller_id=x.id, to_reseller_id=y.id,
                                                    amount=7))]:
        got, what = outcome(fn, idempotency_key=ikey(), **kw)
        assert got == "FAILED_PRECONDITION", (fn.__name__, got, what)
        assert says_balance_and_need(what, 5, 7), f"should say the balance 5 and the 7 needed: {what}"
        assert plat.books(w.a.tenant) == before, (fn.__name__, kw)
    # An account that never had credits: balance 0.
    got, what = outcome(y.bill.TransferCredits, to_reseller_id=y.id, amount=1,
                        idempotency_key=ikey())
    assert got in ("INVALID_ARGUMENT", "NOT_FOUND"), (got, what)          # to itself
    assert plat.books(w.a.tenant) == before, "a transfer to itself"
    got, what = outcome(plat.svc.Charge, tenant_id=w.a.tenant, reseller_id=y.id, amount=1,
                        reason=CREATED, line_id=5, idempotency_key=ikey())
    assert got == "FAILED_PRECONDITION" and says_balance_and_need(what, 0, 1), (got, what)
    assert plat.books(w.a.tenant) == before, "a refused charge of an account never credited"
    assert x.bill.GetBalance().account.balance == 5
    # Exactly the balance is fine.
    e = plat.svc.Charge(tenant_id=w.a.tenant, reseller_id=x.id, amount=5, reason=CREATED, line_id=5,
                        idempotency_key=ikey()).entry
    assert e.from_balance_after == 0


def test_refund_once_and_at_most_the_charge(plat, world):
    w = world
    t = w.a.tenant
    svc = plat.svc
    x = plat.reseller(w.a)
    w.a.bill.MintCredits(reseller_id=x.id, amount=100, idempotency_key=ikey())
    ch = svc.Charge(tenant_id=t, reseller_id=x.id, amount=10, reason=CREATED, line_id=42,
                    idempotency_key=ikey()).entry
    before = plat.books(t)
    got, what = outcome(svc.Refund, tenant_id=t, charge_entry_id=ch.id, amount=11,
                        idempotency_key=ikey())
    assert got == "FAILED_PRECONDITION", (got, what)
    assert plat.books(t) == before
    k1 = ikey()
    rf = svc.Refund(tenant_id=t, charge_entry_id=ch.id, amount=4, idempotency_key=k1).entry
    assert (rf.amount, rf.to_balance_after, rf.refunded_entry_id) == (4, 94, ch.id), rf
    after = plat.books(t)
    # Once per charge, even partly refunded, whatever the amount.
    for amount in (0, 1, 6):
        got, what = outcome(svc.Refund, tenant_id=t, charge_entry_id=ch.id, amount=amount,
                            idempotency_key=ikey())
        assert got == "FAILED_PRECONDITION", (amount, got, what)
    # The replay is not a second refund.
    again = svc.Refund(tenant_id=t, charge_entry_id=ch.id, amount=4, idempotency_key=k1).entry
    assert again.id == rf.id and again.amount == 4
    assert plat.books(t) == after
    # Not a charge, or no such entry.
    mint = w.a.bill.MintCredits(reseller_id=x.id, amount=1, idempotency_key=ikey()).entry
    after = plat.books(t)
    for entry_id, allowed in [(mint.id, ("NOT_FOUND", "FAILED_PRECONDITION", "INVALID_ARGUMENT")),
                              (rf.id, ("NOT_FOUND", "FAILED_PRECONDITION", "INVALID_ARGUMENT")),
                              (ch.id + 10_000_000, ("NOT_FOUND",))]:
        got, what = outcome(svc.Refund, tenant_id=t, charge_entry_id=entry_id, amount=0,
                            idempotency_key=ikey())
        assert got in allowed, (entry_id, got, what)
    assert plat.books(t) == after
    assert x.bill.GetBalance().account.balance == 95
    [listed] = [e for e in w.a.bill.ListLedger(line_id=42, kinds=[CHARGE]).entries]
    assert listed.id == ch.id and listed.refunded_amount == 4


def test_idempotency_replays_conflicts_and_scope(plat, world):
    w = world
    t = w.a.tenant
    svc = plat.svc
    x = plat.reseller(w.a)
    y = plat.reseller(w.a, x)

    # Mint: the replay returns the first entry and moves nothing more.
    k = ikey()
    m = w.a.bill.MintCredits(reseller_id=x.id, amount=40, note="n", idempotency_key=k).entry
    books = plat.books(t)
    w.a.bill.MintCredits(reseller_id=x.id, amount=1, idempotency_key=ikey())   # something between
    books = plat.books(t)
    again = w.a.bill.MintCredits(reseller_id=x.id, amount=40, note="n", idempotency_key=k).entry
    assert again == m, (again, m)
    assert plat.books(t) == books
    for change in [dict(amount=41), dict(reseller_id=y.id)]:
        req = dict(reseller_id=x.id, amount=40, note="n", idempotency_key=k)
        req.update(change)
        got, what = outcome(w.a.bill.MintCredits, **req)
        assert got == "FAILED_PRECONDITION", (change, got, what)
    assert plat.books(t) == books

    # Scoped to the method: the same key on a Transfer is another request.
    tr = w.a.bill.TransferCredits(to_reseller_id=x.id, amount=3, idempotency_key=k).entry
    assert tr.id != m.id and tr.kind == TRANSFER
    # Scoped to the caller: x and the admin may both use key k2.
    k2 = ikey()
    e1 = x.bill.TransferCredits(to_reseller_id=y.id, amount=2, idempotency_key=k2).entry
    e2 = w.a.bill.TransferCredits(to_reseller_id=y.id, amount=2, idempotency_key=k2).entry
    assert e1.id != e2.id and e1.actor_account_id == x.id and e2.actor_account_id == w.a.root
    assert x.bill.TransferCredits(to_reseller_id=y.id, amount=2, idempotency_key=k2).entry.id == e1.id
    got, what = outcome(x.bill.TransferCredits, to_reseller_id=y.id, amount=3, idempotency_key=k2)
    assert got == "FAILED_PRECONDITION", (got, what)
    # Scoped to the tenant: the service's key in A and in B.
    k3 = ikey()
    ca = svc.Charge(tenant_id=t, reseller_id=x.id, amount=1, reason=CREATED, line_id=3,
                    idempotency_key=k3).entry
    cb = svc.Charge(tenant_id=w.b.tenant, reseller_id=w.b1.id, amount=1, reason=CREATED, line_id=3,
                    idempotency_key=k3).entry
    assert ca.id != cb.id and ca.tenant_id == t and cb.tenant_id == w.b.tenant

    # Charge: the replay answers the first result even when the balance no
    # longer covers it.
    bal = x.bill.GetBalance().account.balance
    k4 = ikey()
    ch = svc.Charge(tenant_id=t, reseller_id=x.id, amount=bal, reason=EXTENDED, line_id=4,
                    idempotency_key=k4).entry
    assert ch.from_balance_after == 0
    books = plat.books(t)
    again = svc.Charge(tenant_id=t, reseller_id=x.id, amount=bal, reason=EXTENDED, line_id=4,
                       idempotency_key=k4).entry
    assert again.id == ch.id and again.amount == bal and again.from_balance_after == 0
    for change in [dict(amount=bal + 1), dict(line_id=5), dict(reseller_id=y.id)]:
        req = dict(tenant_id=t, reseller_id=x.id, amount=bal, reason=EXTENDED, line_id=4,
                   idempotency_key=k4)
        req.update(change)
        got, what = outcome(svc.Charge, **req)
        assert got == "FAILED_PRECONDITION", (change, got, what)
    assert plat.books(t) == books
    # Refund replay and conflict.
    k5 = ikey()
    rf = svc.Refund(tenant_id=t, charge_entry_id=ch.id, amount=0, idempotency_key=k5).entry
    assert rf.amount == bal
    assert svc.Refund(tenant_id=t, charge_entry_id=ch.id, amount=0, idempotency_key=k5).entry.id == rf.id
    got, what = outcome(svc.Refund, tenant_id=t, charge_entry_id=ca.id, amount=0, idempotency_key=k5)
    assert got == "FAILED_PRECONDITION", (got, what)

    # Keys of 128 printable characters are fine.
    long_key = "".join(chr(33 + i % 94) for i in range(128))
    e = w.a.bill.MintCredits(reseller_id=x.id, amount=1, idempotency_key=long_key).entry
    assert w.a.bill.MintCredits(reseller_id=x.id, amount=1, idempotency_key=long_key).entry.id == e.id


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------

def clients(plat, token, n):
    """n Billing clients, each on its own channel, connected."""
    out = []
    for _ in range(n):
        ch = grpc.insecure_channel(plat.billingd.target)
        grpc.channel_ready_future(ch).result(timeout=10)
        out.append((ch, Billing(ch, token)))
    return out


def at_once(fns):
    """Runs the callables in threads released together; their outcomes in order."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i):
        barrier.wait()
        results[i] = outcome(fns[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return results


@pytest.mark.parametrize("how", ["charge", "transfer"])
def test_concurrent_debits_never_overdraw(plat, world, how):
    """32 clients at once against a balance that covers exactly 20 of them."""
    w = world
    t = w.a.tenant
    x = plat.reseller(w.a)
    y = plat.reseller(w.a, x)
    n, amount, attempts = 20, 3, 32
    w.a.bill.MintCredits(reseller_id=x.id, amount=n * amount, idempotency_key=ikey())
    before_entries = plat.entries(t)
    before_consumption = w.a.bill.GetBalance(kind=CONSUMPTION).account.balance
    cred = plat.svc.token if how == "charge" else x.token
    cl = clients(plat, cred, attempts)
    try:
        if how == "charge":
            fns = [lambda b=b, i=i: b.Charge(tenant_id=t, reseller_id=x.id, amount=amount, reason=CREATED,
                                             line_id=1000 + i, idempotency_key=ikey())
                   for i, (_, b) in enumerate(cl)]
        else:
            fns = [lambda b=b: b.TransferCredits(to_reseller_id=y.id, amount=amount,
                                                 idempotency_key=ikey()) for _, b in cl]
        results = at_once(fns)
    finally:
        for ch, _ in cl:
            ch.close()
    codes = [c for c, _ in results]
    ok = [r.entry for c, r in results if c == "OK"]
    refused = [r for c, r in results if c != "OK"]
    assert codes.count("OK") == n, codes
    assert codes.count("FAILED_PRECONDITION") == attempts - n, codes
    for msg in refused:
        assert says_balance_and_need(msg, 0, amount), msg
    assert len({e.id for e in ok}) == n
    # Each success saw its own balance: 57, 54, ..., 0, once each.
    assert sorted(e.from_balance_after for e in ok) == list(range(0, n * amount, amount))
    assert x.bill.GetBalance().account.balance == 0
    assert plat.sql_balance(t, x.id) == 0
    assert plat.entries(t) == before_entries + n
    if how == "charge":
        assert w.a.bill.GetBalance(kind=CONSUMPTION).account.balance == before_consumption + n * amount
    else:
        assert y.bill.GetBalance().account.balance == n * amount
        assert sorted(e.to_balance_after for e in ok) == list(range(amount, (n + 1) * amount, amount))
    assert not audit(plat, t)


@pytest.mark.parametrize("method", ["MintCredits", "TransferCredits", "Charge", "Refund"])
def test_one_key_from_8_clients_at_once_applies_once(plat, world, method):
    w = world
    t = w.a.tenant
    x = plat.reseller(w.a)
    y = plat.reseller(w.a, x)
    w.a.bill.MintCredits(reseller_id=x.id, amount=100, idempotency_key=ikey())
    svc_token = plat.svc.token
    k = ikey()
    if method == "MintCredits":
        cred, req = w.a.token, dict(reseller_id=x.id, amount=7, idempotency_key=k)
    elif method == "TransferCredits":
        cred, req = x.token, dict(to_reseller_id=y.id, amount=7, idempotency_key=k)
    elif method == "Charge":
        cred, req = svc_token, dict(tenant_id=t, reseller_id=x.id, amount=7, reason=CREATED,
                                    line_id=77, idempotency_key=k)
    else:
        ch = plat.svc.Charge(tenant_id=t, reseller_id=x.id, amount=7, reason=CREATED, line_id=78,
                             idempotency_key=ikey()).entry
        cred, req = svc_token, dict(tenant_id=t, charge_entry_id=ch.id, amount=0, idempotency_key=k)
    before = plat.books(t)
    before_x = plat.sql_balance(t, x.id)
    cl = clients(plat, cred, 8)
    try:
        results = at_once([lambda b=b: getattr(b, method)(**req) for _, b in cl])
    finally:
        for c, _ in cl:
            c.close()
    assert [c for c, _ in results] == ["OK"] * 8, results
    ids = {r.entry.id for _, r in results}
    assert len(ids) == 1, ids
    assert plat.entries(t) == before[1][0] + 1
    delta = {"MintCredits": 7, "TransferCredits": -7, "Charge": -7, "Refund": 7}[method]
    assert plat.sql_balance(t, x.id) == before_x + delta
    assert not audit(plat, t)


def test_one_key_two_requests_at_once_applies_one(plat, world):
    """8 clients, one key, two different charges: one of them is made once; the
    clients that sent it get its entry, the others FAILED_PRECONDITION."""
    w = world
    t = w.a.tenant
    x = plat.reseller(w.a)
    w.a.bill.MintCredits(reseller_id=x.id, amount=100, idempotency_key=ikey())
    before = plat.entries(t)
    k = ikey()
    cl = clients(plat, plat.svc.token, 8)
    try:
        results = at_once([lambda b=b, i=i: b.Charge(tenant_id=t, reseller_id=x.id, amount=7 + i % 2,
                                                     reason=CREATED, line_id=80, idempotency_key=k)
                           for i, (_, b) in enumerate(cl)])
    finally:
        for c, _ in cl:
            c.close()
    ok = [(i, r.entry) for i, (c, r) in enumerate(results) if c == "OK"]
    assert ok, results
    assert len({e.id for _, e in ok}) == 1, ok
    won = ok[0][1].amount
    assert all(7 + i % 2 == won for i, _ in ok), ok
    for i, (c, r) in enumerate(results):
        if 7 + i % 2 != won:
            assert c == "FAILED_PRECONDITION", (i, c, r)
    assert plat.entries(t) == before + 1
    assert plat.sql_balance(t, x.id) == 100 - won


def test_concurrent_refunds_of_one_charge_make_one(plat, world):
    w = world
    t = w.a.tenant
    x = plat.reseller(w.a)
    w.a.bill.MintCredits(reseller_id=x.id, amount=100, idempotency_key=ikey())
    ch = plat.svc.Charge(tenant_id=t, reseller_id=x.id, amount=40, reason=CREATED, line_id=81,
                         idempotency_key=ikey()).entry
    before = plat.entries(t)
    cl = clients(plat, plat.svc.token, 8)
    try:
        results = at_once([lambda b=b, i=i: b.Refund(tenant_id=t, charge_entry_id=ch.id,
                                                     amount=i * 5, idempotency_key=ikey())
                           for i, (_, b) in enumerate(cl)])
    finally:
        for c, _ in cl:
            c.close()
    codes = [c for c, _ in results]
    assert codes.count("OK") == 1 and codes.count("FAILED_PRECONDITION") == 7, results
    [e] = [r.entry for c, r in results if c == "OK"]
    assert plat.entries(t) == before + 1
    assert plat.sql_balance(t, x.id) == 60 + e.amount
    [listed] = w.a.bill.ListLedger(line_id=81, kinds=[CHARGE]).entries
    assert listed.refunded_amount == e.amount
    assert not audit(plat, t)


class Gate:
    """A row lock held by postgres in an open transaction: the calls that need
    the row wait behind it, and go on together when it commits. Makes the race
    certain instead of likely (as test_playback.py's Gate does)."""

    def __init__(self, plat, sql):
        self.plat = plat
        self.app = "fdgate-" + uuid.uuid4().hex[:12]
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", fdtest.PGHOST, "-p",
             str(fdtest.PGPORT), "-U", "postgres", "-d", plat.db.name],
            env=dict(os.environ, PGAPPNAME=self.app),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN;\n{sql};\n")
        self.proc.stdin.flush()
        held = (f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{self.app}'"
                " AND state = 'idle in transaction' AND query NOT ILIKE 'begin%'")
        self.until(lambda: self.proc.poll() is None and plat.sql(held) == "1", f"gate held: {sql}")

    def until(self, pred, what, timeout=5.0):
        start = time.time()
        while not pred():
            assert time.time() - start < timeout, f"{what}: not within {timeout} s"
            time.sleep(0.02)

    def waiting(self):
        """How many of billingd's statements wait for a lock in this database
        (the balance row, inside frontdesk.billing_charge or _refund too)."""
        return int(self.plat.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            f" AND application_name <> '{self.app}' AND wait_event_type = 'Lock'"
            " AND (query LIKE '%frontdesk.credit_balances%' OR query SIMILAR TO"
            " '%frontdesk.billing\\_(charge|refund)%')"))

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()


SESSIONS = ("SELECT application_name, state, wait_event_type, wait_event, left(query, 60)"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")


def behind_gate(plat, sql, fns):
    """Runs the callables at once (threads behind a barrier) while a Gate holds
    `sql`'s lock; releases it once every one of them waits behind it.
    Returns their outcomes in order."""
    gate = Gate(plat, sql)
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i):
        barrier.wait()
        results[i] = outcome(fns[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    late = None
    try:
        for th in threads:
            th.start()
        try:
            gate.until(lambda: gate.waiting() >= len(fns), f"{len(fns)} calls waiting behind the gate")
        except AssertionError as e:
            late = f"{e}; sessions: {plat.rows(SESSIONS)}"
    finally:
        gate.release()
    for th in threads:
        th.join(60)
    assert not late, (late, results)
    assert all(r is not None for r in results), "a call did not finish"
    return results


def lock_row(tenant_id, account_id):
    return (f"SELECT 1 FROM frontdesk.credit_balances WHERE tenant_id = {tenant_id}"
            f" AND account_id = {account_id} FOR UPDATE")


def audit_rows(plat, tenant_id, action=None, where=""):
    """The tenant's audit_events, read as postgres: dicts, oldest first."""
    cond = f" AND action = '{action}'" if action else ""
    out = plat.rows(
        "SELECT id, actor, actor_tenant_id, actor_account_id, actor_role, actor_path, actor_key_id,"
        " action, target, source, outcome, detail::text FROM frontdesk.audit_events"
        f" WHERE tenant_id = {int(tenant_id)}{cond} {where} ORDER BY id")
    keys = ["id", "actor", "actor_tenant_id", "actor_account_id", "actor_role", "actor_path",
            "actor_key_id", "action", "target", "source", "outcome", "detail"]
    rows = []
    for r in out:
        d = dict(zip(keys, r))
        for k in ("id", "actor_tenant_id", "actor_account_id", "actor_key_id"):
            d[k] = int(d[k])
        d["detail"] = json.loads(d["detail"])
        rows.append(d)
    return rows


# Tenants whose balances a test put where no call can (near the int64 top):
# their entries' balance-after cannot chain from 0, so the last audit of the
# books skips them (the tests check them themselves).
TAMPERED = set()


@pytest.mark.parametrize("method", ["MintCredits", "TransferCredits", "Charge", "Refund"])
def test_six_duplicates_behind_a_lock_answer_the_first(plat, method):
    """Six identical requests (same key, same request) wait behind a lock on
    the balance row they need, arranged so that executing the request a
    second time would fail: a mint into a balance one mint from the int64
    top, a transfer or a charge of the whole balance, the whole refund of a
    charge. Released together, the first makes the entry; the five that waited
    for its lock answer that entry too (not "not enough credits", an overflow,
    or "already refunded"), and nothing is moved twice or audited twice."""
    a = plat.tenant()            # a tenant of its own: the mint's is tampered with
    t = a.tenant
    x = plat.reseller(a)
    y = plat.reseller(a, x)
    amount, n = 7, 6
    k = ikey()
    if method == "MintCredits":
        a.bill.MintCredits(reseller_id=x.id, amount=3, idempotency_key=ikey())
        TAMPERED.add(t)
        # Room for one mint of 7 below INT64_MAX: a second would overflow.
        plat.sql(f"UPDATE frontdesk.credit_balances SET balance = {INT64_MAX - amount}"
                 f" WHERE tenant_id = {t} AND account_id = {x.id}")
        bill, req = a.bill, dict(reseller_id=x.id, amount=amount, note="six", idempotency_key=k)
    elif method == "TransferCredits":
        a.bill.MintCredits(reseller_id=x.id, amount=amount, idempotency_key=ikey())
        bill, req = x.bill, dict(to_reseller_id=y.id, amount=amount, note="six", idempotency_key=k)
    elif method == "Charge":
        a.bill.MintCredits(reseller_id=x.id, amount=amount, idempotency_key=ikey())
        bill, req = plat.svc, dict(tenant_id=t, reseller_id=x.id, amount=amount, reason=CREATED,
                                   line_id=90, note="six", idempotency_key=k)
    else:
        a.bill.MintCredits(reseller_id=x.id, amount=amount, idempotency_key=ikey())
        ch = plat.svc.Charge(tenant_id=t, reseller_id=x.id, amount=amount, reason=CREATED, line_id=91,
                             idempotency_key=ikey()).entry
        bill, req = plat.svc, dict(tenant_id=t, charge_entry_id=ch.id, amount=0, note="six",
                                   idempotency_key=k)
    before_entries = plat.entries(t)
    before_x, before_y = plat.sql_balance(t, x.id), plat.sql_balance(t, y.id)
    before_audit = len(audit_rows(plat, t))
    cl = clients(plat, bill.token, n)
    try:
        # Every one of them needs x's balance row (the payer's, or the one credited).
        results = behind_gate(plat, lock_row(t, x.id), [lambda b=b: getattr(b, method)(**req) for _, b in cl])
    finally:
        for c, _ in cl:
            c.close()
    assert [c for c, _ in results] == ["OK"] * n, results
    entries = [r.entry for _, r in results]
    assert all(e == entries[0] for e in entries), entries
    e = entries[0]
    assert e.amount == amount and e.note == "six", e
    # One effect.
    assert plat.entries(t) == before_entries + 1
    delta = {"MintCredits": amount, "TransferCredits": -amount, "Charge": -amount, "Refund": amount}[method]
    assert plat.sql_balance(t, x.id) == before_x + delta
    assert plat.sql_balance(t, y.id) == before_y + (amount if method == "TransferCredits" else 0)
    # A replay afterwards answers the same.
    assert getattr(bill, method)(**req).entry == e
    # One audit row for the money moved by people, none for the service's.
    new = audit_rows(plat, t)[before_audit:]
    if method in ("MintCredits", "TransferCredits"):
        action = "credits.mint" if method == "MintCredits" else "credits.transfer"
        mine = [r for r in new if r["detail"].get("entry") == str(e.id)]
        assert [(r["action"], r["target"]) for r in mine] == [(action, f"reseller:{req.get('reseller_id') or y.id}")], new
    else:
        assert not [r for r in new if r["detail"].get("entry") == str(e.id)], new
    if method == "MintCredits":
        assert e.to_balance_after == INT64_MAX, e
        # Put the balance back where the ledger says it is: the books hold again,
        # but for the mint's balance-after, which only the tampering explains.
        plat.sql(f"UPDATE frontdesk.credit_balances SET balance = 3 + {amount}"
                 f" WHERE tenant_id = {t} AND account_id = {x.id}")
        left = audit(plat, t)
        assert len(left) == 1 and left[0].startswith("running balance-after"), left
    else:
        assert not audit(plat, t)


def test_mint_and_transfer_are_audited_once(plat):
    """Each mint and transfer leaves one row in frontdesk.audit_events, in the
    entry's tenant, naming the actor (account, role, reseller path, API key),
    the reseller credited and the amount and entry; replays, refusals,
    charges and refunds leave none."""
    t = plat.tenant()
    p = plat.reseller(t)
    c = plat.reseller(t, p)
    kp = plat.key(p)
    tid = t.tenant
    path = lambda i: plat.sql(f"SELECT path FROM frontdesk.accounts WHERE tenant_id = {tid} AND id = {i}")  # noqa: E731
    start = plat.sql("SELECT coalesce(max(id), 0) FROM frontdesk.audit_events")
    now = time.time()

    def twice(fn, **req):
        first = fn(**req).entry
        assert fn(**req).entry == first     # a replay: no second row
        return first

    m = twice(t.bill.MintCredits, reseller_id=p.id, amount=100, note="opening", idempotency_key=ikey())
    tr = twice(p.bill.TransferCredits, to_reseller_id=c.id, amount=30, idempotency_key=ikey())
    tk = twice(kp.bill.TransferCredits, to_reseller_id=c.id, amount=5, idempotency_key=ikey())
    pm = twice(plat.pa.bill.MintCredits, tenant_id=tid, reseller_id=c.id, amount=2, idempotency_key=ikey())
    ta = twice(t.bill.TransferCredits, from_reseller_id=p.id, to_reseller_id=t.root, amount=1,
               idempotency_key=ikey())
    # Refused: nothing moved, nothing recorded.
    for fn, kw in [(p.bill.TransferCredits, dict(to_reseller_id=c.id, amount=10 ** 6)),
                   (c.bill.TransferCredits, dict(to_reseller_id=p.id, amount=1)),
                   (p.bill.MintCredits, dict(reseller_id=c.id, amount=1))]:
        got, what = outcome(fn, idempotency_key=ikey(), **kw)
        assert got in ("FAILED_PRECONDITION", "NOT_FOUND", "PERMISSION_DENIED"), (kw, got, what)
    # Charges and refunds are linesd's to audit (the line actions behind them).
    ch = plat.svc.Charge(tenant_id=tid, reseller_id=c.id, amount=3, reason=CREATED, line_id=1,
                         idempotency_key=ikey()).entry
    plat.svc.Refund(tenant_id=tid, charge_entry_id=ch.id, amount=0, idempotency_key=ikey())

    rows = [r for r in audit_rows(plat, tid, where=f"AND id > {start}")
            if r["action"].startswith("credits.")]
    admin = dict(actor=f"admin:{t.root}", actor_tenant_id=tid, actor_account_id=t.root,
                 actor_role="tenant_admin", actor_path="", actor_key_id=0)
    reseller_p = dict(actor=f"reseller:{p.id}", actor_tenant_id=tid, actor_account_id=p.id,
                      actor_role="reseller", actor_path=path(p.id), actor_key_id=0)
    want = [
        dict(admin, action="credits.mint", target=f"reseller:{p.id}",
             detail={"amount": "100", "entry": str(m.id)}),
        dict(reseller_p, action="credits.transfer", target=f"reseller:{c.id}",
             detail={"amount": "30", "entry": str(tr.id), "from": str(p.id)}),
        dict(reseller_p, actor=f"apikey:{kp.id}", actor_key_id=kp.id, action="credits.transfer",
             target=f"reseller:{c.id}", detail={"amount": "5", "entry": str(tk.id), "from": str(p.id)}),
        dict(actor=f"admin:{plat.pa.account}", actor_tenant_id=0, actor_account_id=plat.pa.account,
             actor_role="platform_admin", actor_path="", actor_key_id=0, action="credits.mint",
             target=f"reseller:{c.id}", detail={"amount": "2", "entry": str(pm.id)}),
        dict(admin, action="credits.transfer", target=f"reseller:{t.root}",
             detail={"amount": "1", "entry": str(ta.id), "from": str(p.id)}),
    ]
    got = [{k: r[k] for k in want[0]} for r in rows]
    assert got == want, (got, want)
    assert path(p.id).endswith(f"{p.id}.") and path(c.id).startswith(path(p.id))
    assert all(r["source"] == "127.0.0.1" and r["outcome"] == "ok" for r in rows), rows
    recent = plat.sql(f"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = {tid} AND id > {start}"
                      f" AND action LIKE 'credits.%' AND at BETWEEN to_timestamp({now - 60})"
                      f" AND to_timestamp({time.time() + 60})")
    assert recent == str(len(want)), recent
    # The trail is the entry's tenant's only: no other tenant got a row.
    assert plat.sql(f"SELECT count(*) FROM frontdesk.audit_events WHERE id > {start} AND tenant_id <> {tid}"
                    " AND action LIKE 'credits.%'") == "0"


# ---------------------------------------------------------------------------
# The mixed workload and the audit of the books
# ---------------------------------------------------------------------------

def refund_column(plat):
    cols = set(plat.sql("SELECT string_agg(column_name, ',') FROM information_schema.columns "
                        "WHERE table_schema = 'frontdesk' AND table_name = 'ledger_entries'").split(","))
    for c in ["refund_of", "refunded_entry_id", "refunded_entry", "charge_entry_id", "charge_id"]:
        if c in cols:
            return c
    raise AssertionError(f"no column naming the refunded charge among {sorted(cols)}")


def audit(plat, tenant_id=None, skip=()):
    """The books in SQL as postgres; a list of problems (empty when they hold)."""
    w = "WHERE true"
    if tenant_id is not None:
        w += f" AND tenant_id = {int(tenant_id)}"
    for s in skip:
        w += f" AND tenant_id <> {int(s)}"
    rc = refund_column(plat)
    E = f"(SELECT * FROM frontdesk.ledger_entries {w})"
    Bal = f"(SELECT * FROM frontdesk.credit_balances {w})"
    checks = {
        # Every stored balance equals the sum of what its entries moved.
        "balance differs from its ledger sum": f"""
            WITH flows AS (
              SELECT tenant_id, to_account AS account_id, amount::numeric AS d FROM {E} e
              UNION ALL SELECT tenant_id, from_account, -amount::numeric FROM {E} e),
            sums AS (SELECT tenant_id, account_id, sum(d) AS s FROM flows
                     WHERE account_id >= 0 GROUP BY 1, 2)
            SELECT coalesce(b.tenant_id, s.tenant_id), coalesce(b.account_id, s.account_id),
                   b.balance, s.s
              FROM {Bal} b FULL JOIN sums s
                ON b.tenant_id = s.tenant_id AND b.account_id = s.account_id
             WHERE coalesce(b.balance, 0) <> coalesce(s.s, 0) LIMIT 20""",
        # A tenant's accounts (consumption derived from its charges and refunds) sum to 0.
        "tenant's accounts do not sum to 0": f"""
            SELECT tenant_id, sum(v) FROM (
              SELECT tenant_id, balance::numeric AS v FROM {Bal} b
              UNION ALL
              SELECT tenant_id, CASE kind WHEN 'charge' THEN amount ELSE -amount END::numeric
                FROM {E} e WHERE kind IN ('charge', 'refund')) x
             GROUP BY tenant_id HAVING sum(v) <> 0 LIMIT 20""",
        "negative balance other than issuance": f"""
            SELECT tenant_id, account_id, balance FROM {Bal} b
             WHERE (account_id <> 0 AND balance < 0) OR (account_id = 0 AND balance > 0) LIMIT 20""",
        "negative consumption": f"""
            SELECT tenant_id, sum(CASE kind WHEN 'charge' THEN amount ELSE -amount END)
              FROM {E} e WHERE kind IN ('charge', 'refund')
             GROUP BY tenant_id HAVING sum(CASE kind WHEN 'charge' THEN amount ELSE -amount END) < 0""",
        "refund without its charge, larger than it, or to another account": f"""
            SELECT r.tenant_id, r.id, r.{rc}, r.amount, c.id, c.kind, c.amount
              FROM {E} r LEFT JOIN frontdesk.ledger_entries c
                ON c.tenant_id = r.tenant_id AND c.id = r.{rc}
             WHERE r.kind = 'refund'
               AND (c.id IS NULL OR c.kind <> 'charge' OR r.amount > c.amount
                    OR r.to_account <> c.from_account) LIMIT 20""",
        "more than one refund of a charge": f"""
            SELECT tenant_id, {rc}, count(*) FROM {E} e WHERE kind = 'refund'
             GROUP BY tenant_id, {rc} HAVING count(*) > 1 LIMIT 20""",
        "entry of an unknown kind or shape": f"""
            SELECT tenant_id, id, kind, from_account, to_account, amount FROM {E} e
             WHERE amount <= 0
                OR NOT ((kind = 'mint' AND from_account = 0 AND to_account > 0)
                     OR (kind = 'transfer' AND from_account > 0 AND to_account > 0
                         AND from_account <> to_account)
                     OR (kind = 'charge' AND from_account > 0 AND to_account = -1)
                     OR (kind = 'refund' AND from_account = -1 AND to_account > 0)) LIMIT 20""",
        "entry names an account of another tenant or none": f"""
            SELECT e.tenant_id, e.id, e.from_account, e.to_account FROM {E} e
             WHERE (e.from_account > 0 AND NOT EXISTS (SELECT 1 FROM frontdesk.accounts a
                     WHERE a.tenant_id = e.tenant_id AND a.id = e.from_account))
                OR (e.to_account > 0 AND NOT EXISTS (SELECT 1 FROM frontdesk.accounts a
                     WHERE a.tenant_id = e.tenant_id AND a.id = e.to_account)) LIMIT 20""",
        "balance row of an account of another tenant or none": f"""
            SELECT b.tenant_id, b.account_id FROM {Bal} b
             WHERE b.account_id > 0 AND NOT EXISTS (SELECT 1 FROM frontdesk.accounts a
                     WHERE a.tenant_id = b.tenant_id AND a.id = b.account_id) LIMIT 20""",
        # In id order, each entry's balance-after follows from the previous one
        # of the same account (what a statement read from ListLedger shows).
        "running balance-after does not follow in id order": f"""
            WITH legs AS (
              SELECT tenant_id, id, from_account AS account_id, -amount::numeric AS d,
                     from_balance_after::numeric AS after FROM {E} e WHERE from_account >= 0
              UNION ALL
              SELECT tenant_id, id, to_account, amount::numeric, to_balance_after::numeric
                FROM {E} e WHERE to_account >= 0),
            chained AS (SELECT *, lag(after) OVER (PARTITION BY tenant_id, account_id ORDER BY id)
                                  AS prev FROM legs)
            SELECT tenant_id, account_id, id, prev, d, after FROM chained
             WHERE coalesce(prev, 0) + d <> after LIMIT 20""",
    }
    problems = []
    for name, q in checks.items():
        rows = plat.sql(q)
        if rows:
            problems.append(f"{name}: {rows}")
    return problems


def workload_tree(plat):
    """A fresh tenant: root; p1, p2; p1a, p1b under p1, p2a under p2; p1a1 under
    p1a, p2a1 under p2a (three levels below the root)."""
    t = plat.tenant()
    p1 = plat.reseller(t)
    p2 = plat.reseller(t)
    p1a = plat.reseller(t, p1)
    p1b = plat.reseller(t, p1)
    p2a = plat.reseller(t, p2)
    p1a1 = plat.reseller(t, p1a)
    p2a1 = plat.reseller(t, p2a)
    below = {p1.id: [p1a, p1b, p1a1], p2.id: [p2a, p2a1], p1a.id: [p1a1], p2a.id: [p2a1]}
    return t, [p1, p2, p1a, p1b, p2a, p1a1, p2a1], below


def test_mixed_workload_keeps_the_books(plat):
    t, people, below = workload_tree(plat)
    tid = t.tenant
    accounts = [t.root] + [p.id for p in people]
    senders = [p for p in people if p.id in below]
    svc_token = plat.svc.token
    # A little of everything to start with, so that early ops can succeed.
    setup = {t.bill.MintCredits(reseller_id=a, amount=2000, idempotency_key=ikey()).entry.id
             for a in accounts}
    start_entries = plat.entries(tid)
    start = {res(a): t.bill.GetBalance(reseller_id=a).account.balance for a in accounts}
    start[ISS] = t.bill.GetBalance(kind=ISSUANCE).account.balance
    start[CON] = 0

    charges = []                  # (id, amount) of successful charges, shared
    charges_lock = threading.Lock()
    per_client = WORKLOAD_OPS // WORKLOAD_CLIENTS

    def client(i):
        rnd = random.Random(WORKLOAD_SEED * 1000 + i)
        ch = grpc.insecure_channel(plat.billingd.target)
        admin = Billing(ch, t.token)
        svc = Billing(ch, svc_token)
        sellers = {p.id: Billing(ch, p.token) for p in senders}
        ok, other, failed = [], [], 0
        try:
            for n in range(per_client):
                r = rnd.random()
                k = f"w{i}-{n}"
                if r < 0.08:
                    op = (admin.MintCredits, dict(reseller_id=rnd.choice(accounts),
                                                  amount=rnd.randint(1, 400), idempotency_key=k))
                elif r < 0.24:
                    a, b = rnd.sample(accounts, 2)
                    op = (admin.TransferCredits, dict(from_reseller_id=a, to_reseller_id=b,
                                                      amount=rnd.randint(1, 120), idempotency_key=k))
                elif r < 0.40:
                    p = rnd.choice(senders)
                    op = (sellers[p.id].TransferCredits,
                          dict(to_reseller_id=rnd.choice(below[p.id]).id,
                               amount=rnd.randint(1, 60), idempotency_key=k))
                elif r < 0.85 or not charges:
                    op = (svc.Charge, dict(tenant_id=tid, reseller_id=rnd.choice(accounts),
                                           amount=rnd.randint(1, 40),
                                           reason=rnd.choice([CREATED, EXTENDED]),
                                           line_id=rnd.randint(1, 500), idempotency_key=k))
                else:
                    with charges_lock:
                        cid, camount = rnd.choice(charges)
                    amount = 0 if rnd.random() < 0.5 else rnd.randint(1, camount + 2)
                    op = (svc.Refund, dict(tenant_id=tid, charge_entry_id=cid, amount=amount,
                                           idempotency_key=k))
                got, what = outcome(op[0], timeout=30, **op[1])
                if got == "OK":
                    e = what.entry
                    ok.append(e)
                    if e.kind == CHARGE:
                        with charges_lock:
                            charges.append((e.id, e.amount))
                elif got == "FAILED_PRECONDITION":
                    failed += 1
                else:
                    other.append((op[0].__name__, op[1], got, what))
        finally:
            ch.close()
        return ok, other, failed

    began = time.time()
    with ThreadPoolExecutor(WORKLOAD_CLIENTS) as ex:
        results = list(ex.map(client, range(WORKLOAD_CLIENTS)))
    elapsed = time.time() - began
    ok = [e for r in results for e in r[0]]
    other = [x for r in results for x in r[1]]
    failed = sum(r[2] for r in results)
    total = per_client * WORKLOAD_CLIENTS
    rate = total / elapsed
    kinds = {k: sum(1 for e in ok if e.kind == k) for k in (MINT, TRANSFER, CHARGE, REFUND)}
    summary = (f"workload: {total} ops from {WORKLOAD_CLIENTS} clients in {elapsed:.1f} s = "
               f"{rate:.0f} ops/s; {len(ok)} OK (mint {kinds[MINT]}, transfer {kinds[TRANSFER]}, "
               f"charge {kinds[CHARGE]}, refund {kinds[REFUND]}), {failed} FAILED_PRECONDITION, "
               f"{len(other)} other")
    print(summary)
    sys.stderr.write(summary + "\n")
    assert not other, other[:10]
    assert len(ok) > total // 2, summary
    assert kinds[REFUND] > 0 and kinds[CHARGE] > 0 and kinds[MINT] > 0, summary
    assert elapsed < 180, summary

    # What the server said it did adds up to what it has.
    assert len({e.id for e in ok}) == len(ok)
    want = dict(start)
    for e in ok:
        assert e.tenant_id == tid and e.amount > 0, e
        want[ref(e.from_account)] -= e.amount
        want[ref(e.to_account)] += e.amount
        if e.from_account.kind == RESELLER:
            assert e.from_balance_after >= 0, e
    got = {res(a): t.bill.GetBalance(reseller_id=a).account.balance for a in accounts}
    got[ISS] = t.bill.GetBalance(kind=ISSUANCE).account.balance
    got[CON] = t.bill.GetBalance(kind=CONSUMPTION).account.balance
    assert got == want, (got, want)
    assert sum(got.values()) == 0
    assert plat.entries(tid) == start_entries + len(ok)
    sql = plat.balances(tid)
    assert {res(a): sql.get(a, 0) for a in accounts} == {res(a): want[res(a)] for a in accounts}
    assert sql.get(0) == want[ISS]
    refunds = [e for e in ok if e.kind == REFUND]
    assert len({e.refunded_entry_id for e in refunds}) == len(refunds), "a charge refunded twice"
    # A reseller's ledger view at scale: exactly the entries touching its subtree.
    p1 = people[0]
    subtree = {p1.id} | {p.id for p in below[p1.id]}
    touching = sorted((e.id for e in ok if {e.from_account.reseller_id, e.to_account.reseller_id}
                       & subtree and RESELLER in (e.from_account.kind, e.to_account.kind)),
                      reverse=True)
    seen = [e.id for e in all_entries(p1.bill, page_size=1000)]
    assert [i for i in seen if i not in setup] == touching
    # The whole ledger, newest first, through pages of at most 1000.
    listed = all_entries(t.bill, page_size=5000)
    assert len(listed) == plat.entries(tid)
    assert all(a.id > b.id for a, b in zip(listed, listed[1:]))
    r = t.bill.ListLedger(page_size=5000)
    assert len(r.entries) == 1000 and r.next_page_token
    assert len(t.bill.ListLedger().entries) == 50
    # The books, in SQL.
    problems = audit(plat, tid)
    assert not problems, problems


# ---------------------------------------------------------------------------
# Isolation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cred", ["token", "api_key"])
def test_tenant_admin_cannot_reach_another_tenant(plat, world, cred):
    w = world
    a = w.a.bill if cred == "token" else w.ka.bill
    bt, b1, broot = w.b.tenant, w.b1.id, w.b.root
    missing = bt + 100000
    before = plat.books(w.a.tenant, bt)
    calls = []
    for tb in [bt, missing]:
        calls += [
            ("GetBalance", dict(tenant_id=tb)),
            ("GetBalance", dict(tenant_id=tb, reseller_id=b1)),
            ("GetBalance", dict(tenant_id=tb, kind=ISSUANCE)),
            ("GetBalance", dict(tenant_id=tb, kind=CONSUMPTION)),
            ("MintCredits", dict(tenant_id=tb, reseller_id=b1, amount=1)),
            ("MintCredits", dict(tenant_id=tb, reseller_id=0, amount=1)),
            ("TransferCredits", dict(tenant_id=tb, to_reseller_id=b1, amount=1)),
            ("TransferCredits", dict(tenant_id=tb, from_reseller_id=b1, to_reseller_id=broot,
                                     amount=1)),
            ("TransferCredits", dict(tenant_id=tb, from_reseller_id=b1, to_reseller_id=w.a.root,
                                     amount=1)),
            ("ListLedger", dict(tenant_id=tb)),
            ("ListLedger", dict(tenant_id=tb, reseller_id=b1)),
        ]
    calls += [
        # Its own tenant, B's ids.
        ("GetBalance", dict(tenant_id=0, reseller_id=b1)),
        ("GetBalance", dict(tenant_id=0, reseller_id=broot)),
        ("MintCredits", dict(tenant_id=0, reseller_id=b1, amount=1)),
        ("MintCredits", dict(tenant_id=0, reseller_id=broot, amount=1)),
        ("TransferCredits", dict(tenant_id=0, to_reseller_id=b1, amount=1)),
        ("TransferCredits", dict(tenant_id=0, to_reseller_id=broot, amount=1)),
        ("TransferCredits", dict(tenant_id=0, from_reseller_id=b1, to_reseller_id=w.a.root, amount=1)),
        ("TransferCredits", dict(tenant_id=0, from_reseller_id=broot, to_reseller_id=w.r2.id,
                                 amount=1)),
        ("TransferCredits", dict(tenant_id=w.a.tenant, from_reseller_id=b1, to_reseller_id=w.r2.id,
                                 amount=1)),
        ("TransferCredits", dict(tenant_id=w.a.tenant, to_reseller_id=broot, amount=1)),
        ("ListLedger", dict(tenant_id=0, reseller_id=b1)),
    ]
    wrong = []
    for method, kw in calls:
        if method in ("MintCredits", "TransferCredits"):
            kw = dict(kw, idempotency_key=ikey())
        got, what = outcome(getattr(a, method), **kw)
        if got != "NOT_FOUND":
            if method == "ListLedger" and got == "OK" and not what.entries and kw["tenant_id"] == 0:
                continue                  # a filter on a foreign id may list nothing
            wrong.append((method, kw, got, what if got != "OK" else str(what)[:200]))
    assert not wrong, wrong
    # Charge and Refund through linesd's token naming A with B's ids.
    svc = plat.svc
    for method, kw in [("Charge", dict(tenant_id=w.a.tenant, reseller_id=b1, amount=1,
                                       reason=CREATED, line_id=1)),
                       ("Charge", dict(tenant_id=w.a.tenant, reseller_id=broot, amount=1,
                                       reason=CREATED, line_id=1)),
                       ("Charge", dict(tenant_id=missing, reseller_id=b1, amount=1, reason=CREATED,
                                       line_id=1)),
                       ("Charge", dict(tenant_id=w.a.tenant, reseller_id=999999999, amount=1,
                                       reason=CREATED, line_id=1)),
                       ("Refund", dict(tenant_id=w.a.tenant, charge_entry_id=w.b_charge.id,
                                       amount=0)),
                       ("Refund", dict(tenant_id=w.a.tenant, charge_entry_id=w.b_charge.id,
                                       amount=1)),
                       ("Refund", dict(tenant_id=missing, charge_entry_id=w.b_charge.id,
                                       amount=0))]:
        got, what = outcome(getattr(svc, method), idempotency_key=ikey(), **kw)
        if got != "NOT_FOUND":
            wrong.append((method, kw, got, what))
    assert not wrong, wrong
    # A page token of B's ledger does not open it to A.
    bt_page = w.b.bill.ListLedger(page_size=1).next_page_token
    if bt_page:
        got, what = outcome(a.ListLedger, page_token=bt_page)
        if got == "OK":
            assert all(e.tenant_id == w.a.tenant for e in what.entries), what
        else:
            assert got in ("INVALID_ARGUMENT", "NOT_FOUND"), (got, what)
    assert plat.books(w.a.tenant, bt) == before
    # Its own tenant still works, by 0 and by id; B's charge can still be refunded by B's name.
    assert a.GetBalance(tenant_id=0).account.tenant_id == w.a.tenant
    assert a.GetBalance(tenant_id=w.a.tenant).account.reseller_id == w.a.root
    assert w.b.bill.GetBalance(reseller_id=b1).account.balance == plat.sql_balance(bt, b1)


@pytest.mark.parametrize("cred", ["token", "api_key"])
def test_reseller_moves_credits_down_only(plat, world, cred):
    w = world
    r1 = w.r1.bill if cred == "token" else w.kr1.bill
    before = plat.books(w.a.tenant, w.b.tenant)
    cases = [
        (r1, "r1", dict(to_reseller_id=w.a.root)),                  # up
        (r1, "r1", dict(to_reseller_id=w.r2.id)),                   # sideways
        (r1, "r1", dict(to_reseller_id=w.b1.id)),                   # another tenant
        (r1, "r1", dict(to_reseller_id=w.b.root)),
        (r1, "r1", dict(tenant_id=w.b.tenant, to_reseller_id=w.b1.id)),
        (r1, "r1", dict(to_reseller_id=999999999)),                 # nobody
        (r1, "r1", dict(from_reseller_id=w.r2.id, to_reseller_id=w.r1a.id)),   # pays with r2's
        (r1, "r1", dict(from_reseller_id=w.a.root, to_reseller_id=w.r1.id)),
        (r1, "r1", dict(from_reseller_id=w.b1.id, to_reseller_id=w.r1a.id)),
        (w.r1a.bill, "r1a", dict(to_reseller_id=w.r1.id)),          # up
        (w.r1a.bill, "r1a", dict(to_reseller_id=w.a.root)),
        (w.r1a.bill, "r1a", dict(to_reseller_id=w.r2.id)),          # a cousin
        (w.r1aa.bill, "r1aa", dict(to_reseller_id=w.r1a.id)),       # a leaf, up
        (w.r2.bill, "r2", dict(to_reseller_id=w.r1aa.id)),
    ]
    wrong = []
    for bill, who, kw in cases:
        got, what = outcome(bill.TransferCredits, amount=1, idempotency_key=ikey(), **kw)
        allowed = ("NOT_FOUND",)
        if "from_reseller_id" in kw:
            # Naming any account but its own to pay: the same answer whoever it is.
            allowed = ("NOT_FOUND", "PERMISSION_DENIED")
        if got not in allowed:
            wrong.append((who, kw, got, what))
    # To itself: nothing to move.
    got, what = outcome(r1.TransferCredits, to_reseller_id=w.r1.id, amount=1, idempotency_key=ikey())
    if got not in ("NOT_FOUND", "INVALID_ARGUMENT"):
        wrong.append(("r1", "to itself", got, what))
    # Paying with a sub-reseller's balance is for admins only.
    got, what = outcome(r1.TransferCredits, from_reseller_id=w.r1a.id, to_reseller_id=w.r1aa.id,
                        amount=1, idempotency_key=ikey())
    if got not in ("NOT_FOUND", "PERMISSION_DENIED"):
        wrong.append(("r1", "from r1a", got, what))
    # A page token of the admin's listing does not widen a reseller's.
    page = w.a.bill.ListLedger(page_size=1).next_page_token
    assert page
    got, what = outcome(w.r1aa.bill.ListLedger, page_token=page, page_size=1000)
    if got == "OK":
        inside = {w.r1aa.id}
        bad_rows = [e.id for e in what.entries
                    if not ({e.from_account.reseller_id, e.to_account.reseller_id} & inside)]
        if bad_rows:
            wrong.append(("ListLedger with the admin's page token", bad_rows[:5]))
    elif got not in ("INVALID_ARGUMENT", "NOT_FOUND"):
        wrong.append(("ListLedger with the admin's page token", got, what))
    # Another tenant by name.
    for method, kw in [("GetBalance", dict(tenant_id=w.b.tenant)),
                       ("GetBalance", dict(tenant_id=w.b.tenant, reseller_id=w.b1.id)),
                       ("ListLedger", dict(tenant_id=w.b.tenant))]:
        got, what = outcome(getattr(r1, method), **kw)
        if got != "NOT_FOUND":
            wrong.append((method, kw, got, what))
    # Reading outside the subtree.
    for bill, target in [(r1, w.a.root), (r1, w.r2.id), (r1, w.b1.id), (w.r1a.bill, w.r1.id)]:
        got, what = outcome(bill.GetBalance, reseller_id=target)
        if got != "NOT_FOUND":
            wrong.append(("GetBalance", target, got, what))
        got, what = outcome(bill.ListLedger, reseller_id=target)
        if not (got == "NOT_FOUND" or (got == "OK" and not what.entries)):
            wrong.append(("ListLedger", target, got, str(what)[:200]))
    assert not wrong, wrong
    assert plat.books(w.a.tenant, w.b.tenant) == before
    # Down the tree works, two levels down too, and naming its own account to pay.
    e = r1.TransferCredits(to_reseller_id=w.r1aa.id, amount=1, idempotency_key=ikey()).entry
    assert (ref(e.from_account), ref(e.to_account)) == (res(w.r1.id), res(w.r1aa.id))
    e = r1.TransferCredits(from_reseller_id=w.r1.id, to_reseller_id=w.r1a.id, amount=1,
                           idempotency_key=ikey()).entry
    assert (ref(e.from_account), ref(e.to_account)) == (res(w.r1.id), res(w.r1a.id))
    # The tenant admin moves between any two accounts of the tenant, upwards too;
    # from == to is refused.
    e = w.a.bill.TransferCredits(from_reseller_id=w.r1aa.id, to_reseller_id=w.r2.id, amount=1,
                                 idempotency_key=ikey()).entry
    assert (ref(e.from_account), ref(e.to_account)) == (res(w.r1aa.id), res(w.r2.id))
    e = w.ka.bill.TransferCredits(from_reseller_id=w.r2.id, to_reseller_id=w.a.root, amount=1,
                                  idempotency_key=ikey()).entry
    assert e.actor_account_id == w.a.root
    for kw in [dict(from_reseller_id=w.r2.id, to_reseller_id=w.r2.id), dict(to_reseller_id=w.a.root)]:
        expect("INVALID_ARGUMENT", w.a.bill.TransferCredits, amount=1, idempotency_key=ikey(), **kw)


def test_special_account_ids_are_not_reseller_accounts(plat, world):
    """Issuance is 0 and consumption -1 inside the database: no request can
    name them as a reseller."""
    w = world
    t = w.a.tenant
    before = plat.books(t, w.b.tenant)
    wrong = []
    for bill, method, kw in [
        (w.a.bill, "MintCredits", dict(reseller_id=-1, amount=1)),
        (w.a.bill, "TransferCredits", dict(from_reseller_id=-1, to_reseller_id=w.r2.id, amount=1)),
        (w.a.bill, "TransferCredits", dict(from_reseller_id=w.r2.id, to_reseller_id=-1, amount=1)),
        (w.a.bill, "TransferCredits", dict(from_reseller_id=w.r2.id, to_reseller_id=0, amount=1)),
        (w.a.bill, "TransferCredits", dict(to_reseller_id=-5, amount=1)),
        (w.r1.bill, "TransferCredits", dict(to_reseller_id=-1, amount=1)),
        (w.r1.bill, "TransferCredits", dict(to_reseller_id=0, amount=1)),
        (plat.pa.bill, "MintCredits", dict(tenant_id=t, reseller_id=-1, amount=1)),
        (plat.pa.bill, "TransferCredits", dict(tenant_id=t, from_reseller_id=-1,
                                               to_reseller_id=w.r2.id, amount=1)),
        (plat.svc, "Charge", dict(tenant_id=t, reseller_id=-1, amount=1, reason=CREATED, line_id=1)),
        (plat.svc, "Charge", dict(tenant_id=t, reseller_id=0, amount=1, reason=CREATED, line_id=1)),
        (plat.svc, "Charge", dict(tenant_id=-1, reseller_id=w.r2.id, amount=1, reason=CREATED,
                                  line_id=1)),
        (plat.svc, "Refund", dict(tenant_id=t, charge_entry_id=0, amount=0)),
        (plat.svc, "Refund", dict(tenant_id=t, charge_entry_id=-1, amount=0)),
    ]:
        got, what = outcome(getattr(bill, method), idempotency_key=ikey(), **kw)
        if got not in ("INVALID_ARGUMENT", "NOT_FOUND"):
            wrong.append((method, kw, got, what))
    for bill, kw in [(w.a.bill, dict(reseller_id=-1)), (w.r1.bill, dict(reseller_id=-1)),
                     (w.a.bill, dict(kind=RESELLER, reseller_id=-1))]:
        got, what = outcome(bill.GetBalance, **kw)
        if got not in ("INVALID_ARGUMENT", "NOT_FOUND"):
            wrong.append(("GetBalance", kw, got, what))
    assert not wrong, wrong
    assert plat.books(t, w.b.tenant) == before


# ---------------------------------------------------------------------------
# The ledger is append-only in the database
# ---------------------------------------------------------------------------

def test_ledger_rejects_update_delete_truncate(plat, world):
    w = world
    t = w.a.tenant
    db = plat.db.name
    before = plat.sql(f"SELECT count(*), sum(amount), max(id) FROM frontdesk.ledger_entries "
                      f"WHERE tenant_id = {t}")
    part = plat.sql(f"SELECT tableoid::regclass FROM frontdesk.ledger_entries WHERE tenant_id = {t} "
                    f"LIMIT 1")
    assert part, "tenant A has entries"
    owner = plat.sql("SELECT tableowner FROM pg_tables WHERE schemaname = 'frontdesk' "
                     "AND tablename = 'ledger_entries'")
    as_tenant = f"SELECT set_config('frontdesk.tenant_id', '{t}', true);"
    stmts = {
        "UPDATE": f"UPDATE frontdesk.ledger_entries SET amount = amount + 1 WHERE tenant_id = {t}",
        "UPDATE note": f"UPDATE frontdesk.ledger_entries SET note = 'x' WHERE tenant_id = {t}",
        "DELETE": f"DELETE FROM frontdesk.ledger_entries WHERE tenant_id = {t}",
        "TRUNCATE": "TRUNCATE frontdesk.ledger_entries",
        "UPDATE partition": f"UPDATE {part} SET amount = amount + 1 WHERE tenant_id = {t}",
        "DELETE partition": f"DELETE FROM {part} WHERE tenant_id = {t}",
        "TRUNCATE partition": f"TRUNCATE {part}",
    }
    wrong = []
    for role in ["frontdesk_billingd", owner, "postgres"]:
        for name, stmt in stmts.items():
            setrole = "" if role == "postgres" else f"SET LOCAL ROLE {role};"
            # Inside a transaction rolled back: a failure of the check must not
            # destroy the books the other tests read.
            rc, out, err = run_psql(db, f"BEGIN; {setrole} {as_tenant} {stmt}; ROLLBACK;")
            if rc == 0:
                wrong.append((role, name, "accepted", out))
            elif not re.search(r"append-only|permission denied|must be owner", err):
                wrong.append((role, name, "refused for another reason", err[-300:]))
    # The service's role has no UPDATE or DELETE privilege on the ledger at all.
    privs = plat.sql("SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) "
                     "FROM information_schema.role_table_grants WHERE table_schema = 'frontdesk' "
                     "AND table_name = 'ledger_entries' AND grantee = 'frontdesk_billingd'")
    assert "UPDATE" not in privs and "DELETE" not in privs and "TRUNCATE" not in privs, privs
    assert plat.sql("SELECT has_table_privilege('frontdesk_billingd', 'frontdesk.ledger_entries', "
                    "'UPDATE') OR has_table_privilege('frontdesk_billingd', "
                    "'frontdesk.ledger_entries', 'DELETE')") == "f"
    # Balances cannot be deleted by the service either.
    rc, out, err = run_psql(db, f"BEGIN; SET LOCAL ROLE frontdesk_billingd; {as_tenant} "
                                f"DELETE FROM frontdesk.credit_balances WHERE tenant_id = {t}; ROLLBACK;")
    if rc == 0:
        wrong.append(("frontdesk_billingd", "DELETE credit_balances", "accepted", out))
    # Row-level security: as the service with tenant A set, B's rows are invisible.
    rc, out, err = run_psql(db, f"BEGIN; SET LOCAL ROLE frontdesk_billingd; {as_tenant} "
                                f"SELECT count(*) FROM frontdesk.ledger_entries "
                                f"WHERE tenant_id = {w.b.tenant}; ROLLBACK;")
    assert rc == 0 and out.split("\n")[-2] == "0", (rc, out, err)
    assert not wrong, wrong
    after = plat.sql(f"SELECT count(*), sum(amount), max(id) FROM frontdesk.ledger_entries "
                     f"WHERE tenant_id = {t}")
    assert after == before


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

class Raw:
    """Bytes sent as a string field, past the client's UTF-8 check."""

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Raw({self.data!r})"


@pytest.fixture(scope="module")
def bad(plat, world):
    """A reseller with credits and a charge of it nobody refunds: the base
    requests of the bad-input cases succeed as they are."""
    x = plat.reseller(world.a)
    world.a.bill.MintCredits(reseller_id=x.id, amount=100000, idempotency_key=ikey())
    ch = plat.svc.Charge(tenant_id=world.a.tenant, reseller_id=x.id, amount=50, reason=CREATED,
                         line_id=5, idempotency_key=ikey()).entry
    return ns(x=x, charge=ch)


def base_request(method, plat, w, bad):
    return {
        "MintCredits": lambda: (w.a.bill, dict(reseller_id=bad.x.id, amount=1, note="n",
                                               idempotency_key=ikey())),
        "TransferCredits": lambda: (w.a.bill, dict(from_reseller_id=bad.x.id,
                                                   to_reseller_id=w.a.root, amount=1, note="n",
                                                   idempotency_key=ikey())),
        "Charge": lambda: (plat.svc, dict(tenant_id=w.a.tenant, reseller_id=bad.x.id, amount=1,
                                       reason=CREATED, line_id=5, note="n",
                                       idempotency_key=ikey())),
        "Refund": lambda: (plat.svc, dict(tenant_id=w.a.tenant, charge_entry_id=bad.charge.id,
                                       amount=1, note="n", idempotency_key=ikey())),
        "GetBalance": lambda: (w.a.bill, dict(reseller_id=bad.x.id)),
        "ListLedger": lambda: (w.a.bill, dict(page_size=5)),
    }[method]()


KEY_BAD = ["", "k" * 129, "k" * 200, "k\x01ey", "k\ney", "k\x7fey", "k\tey",
           Raw(b"key\x00evil"), Raw(b"key\xff\xfe1")]
# Text that would spoof a portal (fd/text.h): blank-only values, bidi
# overrides and isolates, C1 controls.
BLANK_ONLY = [" ", "   ", "\u00a0", "\u3000\u2003", "\u200b", "\ufeff "]
BIDI = ["abc\u202edef", "\u202e", "\u202ax", "x\u2066y\u2069", "\u2067"]
C1 = ["a\u0085b", "\u0085", "\u0080", "x\u009f"]
NOTE_BAD = ["x" * 501, "x" * 5000, *CONTROL, *BLANK_ONLY, *BIDI, *C1, Raw(b"note\xffnote"),
            Raw(b"note\x00evil")]
AMOUNT_BAD = [0, -1, MAX_PER_CALL + 1, INT64_MAX, INT64_MIN]


def bad_cases():
    cases = []

    def add(method, field, values):
        for v in values:
            cases.append(pytest.param(method, field, v, id=f"{method}.{field}={repr(v)[:30]}"))
    for m in ["MintCredits", "TransferCredits", "Charge"]:
        add(m, "amount", AMOUNT_BAD)
    add("Refund", "amount", [-1, INT64_MIN])
    for m in ["MintCredits", "TransferCredits", "Charge", "Refund"]:
        add(m, "idempotency_key", KEY_BAD)
        add(m, "note", NOTE_BAD)
    add("Charge", "tenant_id", [0])
    add("Refund", "tenant_id", [0])
    # Enum values the ledger's tables (services/billingd/enums.c) do not list:
    # UNSPECIFIED, just past the last, negative, far out; and too many kinds.
    add("Charge", "reason", [99, 0, 3, -1])
    add("Charge", "line_id", [-1])
    add("GetBalance", "kind", [99])
    add("ListLedger", "kinds", [[99], [0], [5], [-1], [1, 0], [1, 2, 3, 4, 1]])
    add("ListLedger", "page_token", ["not-a-token", "x" * (1 << 20)])
    return cases


def send(bill, method, fields):
    raws = {k: v for k, v in fields.items() if isinstance(v, Raw)}
    if not raws:
        return getattr(bill, method)(**fields)
    req_cls, _, _ = bill.stub(method)
    [(k, v)] = raws.items()
    placeholder = "Z" * len(v.data)
    msg = req_cls(**{f: (placeholder if f == k else x) for f, x in fields.items()})
    return bill.raw(method, fdapi.replace_bytes(msg, placeholder, v.data))


@pytest.mark.parametrize("method,field,value", bad_cases())
def test_bad_input_is_refused_naming_the_field(plat, world, bad, method, field, value):
    bill, fields = base_request(method, plat, world, bad)
    fields[field] = value
    before = written(plat, world.a.tenant)
    got, what = outcome(send, bill, method, fields)
    assert got == "INVALID_ARGUMENT", (got, str(what)[:300])
    assert field in what, f"the message should name {field}: {what[:300]}"
    assert written(plat, world.a.tenant) == before


def written(plat, tenant_id):
    """What a refused call must leave as it was: the books, the newest entry
    and the tenant's audit trail."""
    return (plat.books(tenant_id),
            plat.sql(f"SELECT max(id) FROM frontdesk.ledger_entries WHERE tenant_id = {tenant_id}"),
            plat.sql(f"SELECT count(*), max(id) FROM frontdesk.audit_events WHERE tenant_id = {tenant_id}"))


def test_text_that_spoofs_is_refused_and_plain_text_kept(plat, world, bad):
    """Notes of every money-moving call: each refused class (blank-only, bidi
    override U+202E, C1 control U+0085) answers INVALID_ARGUMENT naming the
    note and writes nothing; the text next to them (accents, other scripts,
    an empty note, spaces inside) is kept as sent."""
    w = world
    for method in ["MintCredits", "TransferCredits", "Charge", "Refund"]:
        for value in ["   ", "abc\u202edef", "a\u0085b"]:
            bill, fields = base_request(method, plat, w, bad)
            fields["note"] = value
            before = written(plat, w.a.tenant)
            got, what = outcome(send, bill, method, fields)
            assert got == "INVALID_ARGUMENT" and "note" in what, (method, repr(value), got, what)
            assert written(plat, w.a.tenant) == before, (method, repr(value))
    t = plat.tenant()
    for note in ["", "a b", "ünïcødé", "שלום", "日本語 テキスト", "x" * 500]:
        e = t.bill.MintCredits(reseller_id=0, amount=1, note=note, idempotency_key=ikey()).entry
        assert e.note == note


def test_edges_of_the_limits_are_accepted(plat, world, bad):
    w = world
    for method in ["MintCredits", "TransferCredits", "Charge", "Refund", "GetBalance", "ListLedger"]:
        bill, fields = base_request(method, plat, w, bad)
        getattr(bill, method)(**fields)
    t = plat.tenant()
    r = plat.reseller(t)
    # The largest amount per call, a note of 500 characters (multi-byte too),
    # a key of 128 and of 1 printable characters.
    e = t.bill.MintCredits(reseller_id=r.id, amount=MAX_PER_CALL, note="n" * 500,
                           idempotency_key="k" * 128).entry
    assert e.amount == MAX_PER_CALL and e.note == "n" * 500
    e = t.bill.MintCredits(reseller_id=r.id, amount=1, note="é" * 500, idempotency_key="1").entry
    assert e.note == "é" * 500
    e = t.bill.TransferCredits(from_reseller_id=r.id, to_reseller_id=t.root, amount=MAX_PER_CALL,
                               idempotency_key=ikey()).entry
    assert e.from_balance_after == 1
    e = plat.svc.Charge(tenant_id=t.tenant, reseller_id=t.root, amount=MAX_PER_CALL, reason=CREATED,
                        line_id=1, note="x" * 500, idempotency_key=ikey()).entry
    rf = plat.svc.Refund(tenant_id=t.tenant, charge_entry_id=e.id, amount=MAX_PER_CALL,
                         idempotency_key=ikey()).entry
    assert rf.amount == MAX_PER_CALL
    assert not audit(plat, t.tenant)


def test_sql_metacharacters_in_notes_are_plain_text(plat, world):
    t = plat.tenant()
    evil = "O'Brien\"; DROP TABLE frontdesk.ledger_entries; -- \\ 100% _x_ $1 %s ${x} é ☃"
    key = "O'Brien\";--\\100%_x_$1%s${x}"               # printable ASCII, no spaces
    e = t.bill.MintCredits(reseller_id=0, amount=1, note=evil, idempotency_key=key).entry
    assert e.note == evil
    [listed] = t.bill.ListLedger().entries
    assert listed.note == evil
    assert plat.sql(f"SELECT note FROM frontdesk.ledger_entries WHERE tenant_id = {t.tenant}") == evil


def test_mint_that_would_overflow_moves_nothing(plat):
    """No call can take a balance near the int64 limit (1e12 per call at most),
    so the test puts one there as postgres, in a tenant of its own, and puts it
    back afterwards."""
    t = plat.tenant()
    r = plat.reseller(t)
    s = plat.reseller(t)
    t.bill.MintCredits(reseller_id=r.id, amount=10, idempotency_key=ikey())
    t.bill.MintCredits(reseller_id=s.id, amount=10, idempotency_key=ikey())
    tid = t.tenant
    near = INT64_MAX - 5
    orig = plat.balances(tid)

    def set_balances(r_bal, iss_bal):
        plat.sql(f"UPDATE frontdesk.credit_balances SET balance = CASE account_id "
                 f"WHEN {r.id} THEN {r_bal} WHEN 0 THEN {iss_bal} ELSE balance END "
                 f"WHERE tenant_id = {tid} AND account_id IN ({r.id}, 0)")
    try:
        # r near the top: a mint or a transfer into it would overflow.
        set_balances(near, orig[0])
        # (The audit sees the tampering: it would see a real inconsistency too.)
        seen = audit(plat, tid)
        assert any("ledger sum" in p for p in seen) and any("sum to 0" in p for p in seen), seen
        books = plat.books(tid)
        for fn, kw in [(t.bill.MintCredits, dict(reseller_id=r.id, amount=6)),
                       (t.bill.MintCredits, dict(reseller_id=r.id, amount=MAX_PER_CALL)),
                       (t.bill.TransferCredits, dict(from_reseller_id=s.id, to_reseller_id=r.id,
                                                     amount=10))]:
            got, what = outcome(fn, idempotency_key=ikey(), **kw)
            assert got in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"), (fn.__name__, kw, got, what)
            assert plat.books(tid) == books, (fn.__name__, kw)
        # The issuance account near the bottom: a mint anywhere would overflow it.
        set_balances(10, INT64_MIN + 5)
        books = plat.books(tid)
        got, what = outcome(t.bill.MintCredits, reseller_id=s.id, amount=6, idempotency_key=ikey())
        assert got in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"), (got, what)
        assert plat.books(tid) == books
        # Reading these balances (the consumption one is derived from the others) works.
        assert t.bill.GetBalance(kind=ISSUANCE).account.balance == INT64_MIN + 5
        t.bill.GetBalance(kind=CONSUMPTION)
    finally:
        set_balances(orig[r.id], orig[0])
    assert plat.balances(tid) == orig
    assert not audit(plat, tid)


# ---------------------------------------------------------------------------
# Suspensions and revocations reach billingd through the shared verifier
# ---------------------------------------------------------------------------

def test_suspended_reseller_is_refused_within_5_s(plat, world):
    w = world
    t = w.a.tenant
    s = plat.reseller(w.a)
    sc = plat.reseller(w.a, s)
    ks = plat.key(s)
    w.a.bill.MintCredits(reseller_id=s.id, amount=50, idempotency_key=ikey())
    for bill in (s.bill, sc.bill, ks.bill):
        bill.GetBalance()
    w.a.auth.UpdateReseller(reseller_id=s.id, status=SUSPENDED)
    took = {}
    for who, bill in [("token", s.bill), ("api key", ks.bill), ("child's token", sc.bill)]:
        took[who] = wait_code(bill.GetBalance, "UNAUTHENTICATED", REFUSED_WITHIN)
    books = plat.books(t)
    for bill in (s.bill, ks.bill):
        got, what = outcome(bill.TransferCredits, to_reseller_id=sc.id, amount=1, idempotency_key=ikey())
        assert got == "UNAUTHENTICATED", (got, what)
        assert code_of(bill.ListLedger) == "UNAUTHENTICATED"
    assert plat.books(t) == books
    # Reactivated: accepted again.
    w.a.auth.UpdateReseller(reseller_id=s.id, status=ACTIVE)
    wait_code(s.bill.GetBalance, "OK", REFUSED_WITHIN)
    wait_code(ks.bill.GetBalance, "OK", REFUSED_WITHIN)
    # A revoked API key too.
    w.a.auth.RevokeApiKey(api_key_id=ks.id)
    took["revoked key"] = wait_code(ks.bill.GetBalance, "UNAUTHENTICATED", REFUSED_WITHIN)
    assert all(v <= REFUSED_WITHIN for v in took.values()), took
    sys.stderr.write(f"refused after (s): {took}\n")


def test_suspended_tenant_is_refused_within_5_s(plat):
    t = plat.tenant()
    r = plat.reseller(t)
    k = plat.key(t)
    t.bill.MintCredits(reseller_id=r.id, amount=5, idempotency_key=ikey())
    plat.pa.auth.SuspendTenant(tenant_id=t.tenant, reason="test")
    try:
        for bill in (t.bill, k.bill, r.bill):
            wait_code(bill.GetBalance, "UNAUTHENTICATED", REFUSED_WITHIN)
        got, what = outcome(k.bill.MintCredits, reseller_id=r.id, amount=1, idempotency_key=ikey())
        assert got == "UNAUTHENTICATED", (got, what)
    finally:
        plat.pa.auth.SuspendTenant(tenant_id=t.tenant, reactivate=True)
    wait_code(k.bill.GetBalance, "OK", REFUSED_WITHIN)


# ---------------------------------------------------------------------------
# Last: the whole database, and the log
# ---------------------------------------------------------------------------

def test_zz_the_books_of_every_tenant_hold(plat):
    problems = audit(plat, skip=TAMPERED)
    assert not problems, problems


def test_zz_secrets_never_reach_the_log(plat):
    text = plat.log(plat.billingd)
    leaked = [s[:12] + "..." for s in plat.secrets if s and s in text]
    assert not leaked, leaked
