"""The audit trail, authd's part (issue 12, item 4), end to end: authd and
billingd on one migrated database (fdstack), the rows read back both through
AuthService.ListAuditEvents and as the database's superuser.

What must hold (api/frontdesk/v1/auth.proto, migrations/0006_audit.sql):
- each audited action of authd adds exactly one event, in the tenant it
  concerns, with the right actor (account, role, path, API key), target,
  source and outcome, and nothing else;
- failed logins past the rate limit are one event per window and (account,
  source), however many arrive at once, counting the rest in `repeats`;
- no password, token or key is in any column of any row;
- no role can UPDATE or DELETE an event (the one counted exception: authd
  adding repeats to a 'login.rate_limited' row);
- tenant admins read their tenant, resellers their subtree only (never their
  parent's events), platform admins any tenant by naming it; services not;
- paging and every filter work."""
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdtest  # noqa: E402
import fdapi  # noqa: E402
import fdstack  # noqa: E402
from fdapi import Auth, code_of, expect, outcome, scope  # noqa: E402

A = fdapi.auth_pb2
C = fdapi.common_pb2
SUB = A.RESELLER_PERMISSION_CREATE_SUBRESELLERS

LIMIT, WINDOW = 3, 6          # failed logins per (account, source), seconds

COLS = ("tenant_id, actor, actor_tenant_id, actor_account_id, actor_role, actor_path, actor_key_id, "
        "action, target, source, outcome, repeats, detail::text")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ns(**kw):
    return fdstack.ns(**kw)


class World:
    """One stack and the secrets its tests used (searched for in every row)."""

    def __init__(self):
        self.p = fdstack.Stack(linesd_replicas=0, authd_env={
            "FRONTDESK_LOGIN_FAILURES_PER_ACCOUNT": str(LIMIT),
            "FRONTDESK_LOGIN_WINDOW": str(WINDOW)})
        self.anon = self.p.anon
        self.pa = self.p.pa
        self.secrets = [fdstack.PLATFORM_PW, fdstack.LINESD_SECRET, fdstack.EDGED_SECRET]
        self.keep(self.pa.login)

    def keep(self, login):
        self.secrets += [login.refresh_token, login.access_token, login.access_token.split(".")[2]]
        return login

    def login(self, slug, username, pw):
        self.secrets.append(pw)
        return self.keep(self.anon.Login(tenant_slug=slug, username=username, password=pw))

    def person(self, slug, username, pw, **extra):
        lr = self.login(slug, username, pw)
        return ns(login=lr, token=lr.access_token, api=self.anon.with_token(lr.access_token),
                  account=lr.caller.account_id, username=username, pw=pw, slug=slug, **extra)

    def tenant(self):
        slug = uniq("t")
        pw = "boss-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = self.pa.auth.CreateTenant(slug=slug, name=f"Tenant {slug}", admin_username="boss",
                                      admin_password=pw, admin_display_name="The Boss")
        return self.person(slug, "boss", pw, id=r.tenant.id, root=r.admin.id)

    def reseller(self, t, creator, perms=(SUB,)):
        username = uniq("r")
        pw = "res-pw-" + uuid.uuid4().hex
        self.secrets.append(pw)
        r = creator.api.CreateReseller(username=username, password=pw, display_name=username,
                                       permissions=list(perms)).reseller
        return self.person(t.slug, username, pw, id=r.id, path=path_of(self, t.id, r.id))

    def api_key(self, creator, **kw):
        r = creator.api.CreateApiKey(name=uniq("key"), **kw)
        self.secrets += [r.secret, r.secret.split("_")[-1]]
        return ns(id=r.api_key.id, secret=r.secret, api=self.anon.with_token(r.secret))

    # --- the rows, as the database's superuser (RLS does not apply to it) ---

    def last_id(self):
        return int(self.p.sql("SELECT coalesce(max(id), 0) FROM frontdesk.audit_events"))

    def rows_after(self, since):
        out = self.p.sql(f"SELECT json_build_object({', '.join(jcols())}) FROM frontdesk.audit_events "
                         f"WHERE id > {since} ORDER BY id")
        return [json.loads(x) for x in out.split("\n")] if out else []

    def step(self, fn):
        """Runs fn; returns (its result, the events it added, in order)."""
        before = self.last_id()
        r = fn()
        return r, self.rows_after(before)


def jcols():
    out = []
    for c in ["id", "tenant_id", "actor", "actor_tenant_id", "actor_account_id", "actor_role",
              "actor_path", "actor_key_id", "action", "target", "source", "outcome", "repeats",
              "detail", "at", "last_at"]:
        out += [f"'{c}'", c]
    return out


def path_of(w, tenant, account):
    return w.p.sql(f"SELECT path FROM frontdesk.accounts WHERE tenant_id = {tenant} AND id = {account}")


@pytest.fixture(scope="module")
def w():
    world = World()
    yield world
    codes = world.p.close()
    # A clean exit (under the sanitizers, none of their reports either).
    assert all(c == 0 for c in codes.values()), codes


def one(rows, **want):
    """The single row of rows; asserts each wanted column."""
    assert len(rows) == 1, rows
    row = rows[0]
    for k, v in want.items():
        assert row[k] == v, (k, row[k], v, row)
    return row


def actor_of(person, role, tenant, path="", key=0):
    return dict(actor_account_id=person.account, actor_role=role, actor_path=path, actor_key_id=key,
                actor_tenant_id=tenant)


LOCAL = "127.0.0.1"


# ---------------------------------------------------------------------------
# Each action: one event, the right actor, target, source and outcome
# ---------------------------------------------------------------------------

def test_each_authd_action_is_one_event_with_actor_and_target(w):
    pa = ns(account=w.pa.caller.account_id)
    pa_actor = actor_of(pa, "platform_admin", 0)
    slug = uniq("t")
    pw = "boss-pw-" + uuid.uuid4().hex
    w.secrets.append(pw)
    # tenant.create: an event of the new tenant, by the platform admin.
    r, rows = w.step(lambda: w.pa.auth.CreateTenant(slug=slug, name="Audited", admin_username="boss",
                                                    admin_password=pw, idempotency_key=uniq("k")))
    tid, root = r.tenant.id, r.admin.id
    row = one(rows, tenant_id=tid, action="tenant.create", target=f"tenant:{tid}", source=LOCAL,
              outcome="ok", actor=f"admin:{pa.account}", **pa_actor)
    assert row["detail"]["slug"] == slug and row["detail"]["admin_account"] == str(root)
    # login.success: the account itself.
    admin, rows = w.step(lambda: w.person(slug, "boss", pw))
    one(rows, tenant_id=tid, action="login.success", target=f"account:{root}", outcome="ok",
        source=LOCAL, actor=f"admin:{root}", **actor_of(admin, "tenant_admin", tid))
    # login.failure: a wrong password, an unknown user (in the slug's tenant),
    # an unknown tenant (in the platform's, tenant 0).
    bad = "wrong-pw-" + uuid.uuid4().hex
    w.secrets.append(bad)
    _, rows = w.step(lambda: code_of(w.anon.Login, tenant_slug=slug, username="boss", password=bad))
    one(rows, tenant_id=tid, action="login.failure", target=f"account:{root}", outcome="failed",
        actor="login:boss", actor_account_id=0, actor_role="", actor_path="", source=LOCAL)
    ghost = uniq("ghost")
    _, rows = w.step(lambda: code_of(w.anon.Login, tenant_slug=slug, username=ghost, password=bad))
    one(rows, tenant_id=tid, action="login.failure", target="", outcome="failed", actor=f"login:{ghost}")
    nowhere = uniq("nowhere")
    _, rows = w.step(lambda: code_of(w.anon.Login, tenant_slug=nowhere, username=ghost, password=bad))
    row = one(rows, tenant_id=0, action="login.failure", target="", actor=f"login:{ghost}")
    assert row["detail"] == {"tenant_slug": nowhere}
    # A portal trusted to forward its user's address: that address is the source.
    portal = w.api_key(admin, scopes=[scope("forward_client_address")])
    _, rows = w.step(lambda: code_of(portal.api.Login, tenant_slug=slug, username="boss", password=bad,
                                     client_address="203.0.113.7"))
    one(rows, action="login.failure", source="203.0.113.7", target=f"account:{root}")
    # reseller.create by the tenant admin, then by a reseller (its path recorded).
    r1, rows = w.step(lambda: w.reseller(ns(slug=slug, id=tid), admin))
    assert [x["action"] for x in rows] == ["reseller.create", "login.success"], rows
    row = one(rows[:1], tenant_id=tid, target=f"account:{r1.id}", **actor_of(admin, "tenant_admin", tid))
    assert row["detail"] == {"username": r1.username, "parent": str(root), "permissions": "create_subresellers"}
    r2, rows = w.step(lambda: w.reseller(ns(slug=slug, id=tid), r1))
    one(rows[:1], action="reseller.create", target=f"account:{r2.id}", actor=f"reseller:{r1.id}",
        **actor_of(r1, "reseller", tid, path=r1.path))
    assert r2.path == r1.path + f"{r2.id}."
    # reseller.update, reseller.suspend, reseller.reactivate, account.password_reset:
    # one event per kind of change, by whoever made it.
    _, rows = w.step(lambda: r1.api.UpdateReseller(reseller_id=r2.id, display_name="Renamed",
                                                   notes=C.OptionalString(value="n")))
    row = one(rows, action="reseller.update", target=f"account:{r2.id}", **actor_of(r1, "reseller", tid, r1.path))
    assert row["detail"] == {"fields": "display_name,notes"}
    _, rows = w.step(lambda: admin.api.UpdateReseller(reseller_id=r2.id, status=A.RESELLER_STATUS_SUSPENDED))
    one(rows, action="reseller.suspend", target=f"account:{r2.id}", **actor_of(admin, "tenant_admin", tid))
    _, rows = w.step(lambda: admin.api.UpdateReseller(reseller_id=r2.id, status=A.RESELLER_STATUS_ACTIVE))
    one(rows, action="reseller.reactivate", target=f"account:{r2.id}")
    reset = "reset-pw-" + uuid.uuid4().hex
    w.secrets.append(reset)
    _, rows = w.step(lambda: admin.api.UpdateReseller(reseller_id=r2.id, new_password=reset))
    one(rows, action="account.password_reset", target=f"account:{r2.id}", outcome="ok",
        **actor_of(admin, "tenant_admin", tid))
    r2 = w.person(slug, r2.username, reset, id=r2.id, path=r2.path)
    # account.password_change: one's own, with the current password; a wrong
    # current password is an event too (failed) and changes nothing.
    mine = "mine-pw-" + uuid.uuid4().hex
    w.secrets.append(mine)
    _, rows = w.step(lambda: code_of(r2.api.UpdateReseller, new_password=mine, current_password=bad))
    one(rows, action="account.password_change", target=f"account:{r2.id}", outcome="failed",
        **actor_of(r2, "reseller", tid, r2.path))
    _, rows = w.step(lambda: r2.api.UpdateReseller(new_password=mine, current_password=reset))
    one(rows, action="account.password_change", target=f"account:{r2.id}", outcome="ok",
        **actor_of(r2, "reseller", tid, r2.path))
    # api_key.create, and an action through the key (its id recorded);
    # api_key.revoke once: revoking it again changes nothing, records nothing.
    key, rows = w.step(lambda: w.api_key(admin, scopes=[scope("resellers_write"), scope("resellers_read")]))
    row = one(rows, action="api_key.create", target=f"api_key:{key.id}", **actor_of(admin, "tenant_admin", tid))
    assert row["detail"]["scopes"] == "resellers_read,resellers_write"
    _, rows = w.step(lambda: key.api.UpdateReseller(reseller_id=r2.id, display_name="By key"))
    one(rows, action="reseller.update", actor=f"apikey:{key.id}", actor_key_id=key.id,
        actor_account_id=root, actor_role="tenant_admin")
    _, rows = w.step(lambda: admin.api.RevokeApiKey(api_key_id=key.id))
    one(rows, action="api_key.revoke", target=f"api_key:{key.id}", **actor_of(admin, "tenant_admin", tid))
    _, rows = w.step(lambda: admin.api.RevokeApiKey(api_key_id=key.id))
    assert rows == []
    # refresh_token.reuse: the used token presented again; its family revoked.
    lr = w.login(slug, r1.username, r1.pw)
    w.keep(w.anon.Refresh(refresh_token=lr.refresh_token))
    _, rows = w.step(lambda: code_of(w.anon.Refresh, refresh_token=lr.refresh_token))
    row = one(rows, tenant_id=tid, action="refresh_token.reuse", target=f"account:{r1.id}",
              outcome="refused", actor_account_id=0, actor_role="", source=LOCAL)
    # Revoked: the used token and the one it was rotated into.
    assert row["actor"].startswith("refresh_token:") and row["detail"]["revoked"] == "2", row
    # tenant.suspend / tenant.reactivate: events of that tenant, by the platform admin.
    reason = "unpaid invoice " + uuid.uuid4().hex[:6]
    _, rows = w.step(lambda: w.pa.auth.SuspendTenant(tenant_id=tid, reason=reason))
    row = one(rows, tenant_id=tid, action="tenant.suspend", target=f"tenant:{tid}", **pa_actor)
    assert row["detail"] == {"reason": reason}
    # The right password of a suspended tenant: refused, and recorded so.
    _, rows = w.step(lambda: code_of(w.anon.Login, tenant_slug=slug, username="boss", password=pw))
    row = one(rows, tenant_id=tid, action="login.failure", outcome="refused", target=f"account:{root}")
    assert row["detail"] == {"reason": "tenant suspended"}
    _, rows = w.step(lambda: w.pa.auth.SuspendTenant(tenant_id=tid, reactivate=True))
    one(rows, tenant_id=tid, action="tenant.reactivate", target=f"tenant:{tid}", **pa_actor)
    # A refused call records nothing.
    _, rows = w.step(lambda: code_of(r1.api.UpdateReseller, reseller_id=root, display_name="Nope"))
    assert rows == []
    # The tenant admin reads the same events through the API, newest first
    # (once the services' status cache has seen the reactivation).
    time.sleep(fdstack.CACHE_MS / 1000 + 0.5)
    got = list_all(admin.api, action="tenant.")
    assert [e.action for e in got] == ["tenant.reactivate", "tenant.suspend", "tenant.create"]
    assert got[2].actor_role == C.ROLE_PLATFORM_ADMIN and got[2].actor_account_id == pa.account
    assert got[1].outcome == A.AUDIT_OUTCOME_OK and json.loads(got[1].detail_json) == {"reason": reason}


def test_platform_admin_changes_its_own_password_and_it_is_audited(w):
    new = "pa-new-pw-" + uuid.uuid4().hex
    w.secrets.append(new)
    pa_id = w.pa.caller.account_id
    _, rows = w.step(lambda: w.pa.auth.UpdateReseller(new_password=new, current_password=fdstack.PLATFORM_PW))
    try:
        one(rows, tenant_id=0, action="account.password_change", target=f"account:{pa_id}",
            actor_role="platform_admin", actor_account_id=pa_id)
        w.login("platform", fdstack.PLATFORM_USER, new)
        assert code_of(w.anon.Login, tenant_slug="platform", username=fdstack.PLATFORM_USER,
                       password=fdstack.PLATFORM_PW) == "UNAUTHENTICATED"
        # The platform's own trail: tenant_id 0.
        got = list_all(w.pa.auth, action="account.password_change", actor_account_id=pa_id)
        assert got and got[0].tenant_id == 0 and got[0].target == f"account:{pa_id}"
    finally:
        w.pa.auth.UpdateReseller(new_password=fdstack.PLATFORM_PW, current_password=new)
    w.login("platform", fdstack.PLATFORM_USER, fdstack.PLATFORM_PW)


# ---------------------------------------------------------------------------
# Failed logins past the limit: one event per window and (account, source)
# ---------------------------------------------------------------------------

def parallel(n, fn):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return outcome(fn, i)
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(run, range(n)))


def test_rate_limited_logins_are_one_event_per_window(w):
    t = w.tenant()
    u = w.reseller(t, t)
    bad = "guess-pw-" + uuid.uuid4().hex
    w.secrets.append(bad)
    time.sleep(0.2)
    before = w.last_id()
    for _ in range(LIMIT):
        assert code_of(w.anon.Login, tenant_slug=t.slug, username=u.username, password=bad) == \
            "UNAUTHENTICATED"
    # Past the limit: 8 at once, then 2 more; one row counts them all.
    res = parallel(8, lambda i: w.anon.Login(tenant_slug=t.slug, username=u.username, password=bad))
    assert [c for c, _ in res] == ["RESOURCE_EXHAUSTED"] * 8, res
    for _ in range(2):
        assert code_of(w.anon.Login, tenant_slug=t.slug, username=u.username, password=bad) == \
            "RESOURCE_EXHAUSTED"
    rows = w.rows_after(before)
    assert [r["action"] for r in rows] == ["login.failure"] * LIMIT + ["login.rate_limited"], rows
    lim = one(rows[-1:], tenant_id=t.id, outcome="limited", actor=f"login:{u.username}",
              target=f"account:{u.id}", source=LOCAL, actor_account_id=0)
    assert lim["repeats"] == 10, lim
    assert lim["last_at"] >= lim["at"]
    # More rounds of refusals at once, each on a fresh account: one row each
    # (without the lock that orders them, about one round in three makes two).
    for _ in range(5):
        v = w.reseller(t, t)
        for _ in range(LIMIT):
            code_of(w.anon.Login, tenant_slug=t.slug, username=v.username, password=bad)
        mark = w.last_id()
        res = parallel(8, lambda i: w.anon.Login(tenant_slug=t.slug, username=v.username, password=bad))
        assert [c for c, _ in res] == ["RESOURCE_EXHAUSTED"] * 8, res
        one(w.rows_after(mark), action="login.rate_limited", target=f"account:{v.id}", repeats=8)
    # Another (account, source) pair has its own row; an unknown tenant's go to tenant 0.
    ghost = uniq("ghost")
    nowhere = uniq("nowhere")
    for _ in range(LIMIT + 3):
        code_of(w.anon.Login, tenant_slug=nowhere, username=ghost, password=bad)
    rows = [r for r in w.rows_after(before) if r["actor"] == f"login:{ghost}"]
    assert [r["action"] for r in rows] == ["login.failure"] * LIMIT + ["login.rate_limited"], rows
    one(rows[-1:], tenant_id=0, repeats=3, detail={"tenant_slug": nowhere})
    # Through the API the tenant admin sees the one row with its count.
    [e] = list_all(t.api, action="login.rate_limited", target=f"account:{u.id}")
    assert e.repeats == 10 and e.outcome == A.AUDIT_OUTCOME_LIMITED and e.target == f"account:{u.id}"
    # The next window gets a row of its own.
    time.sleep(WINDOW + 0.5)
    mark = w.last_id()
    for _ in range(LIMIT + 2):
        code_of(w.anon.Login, tenant_slug=t.slug, username=u.username, password=bad)
    rows = w.rows_after(mark)
    assert [r["action"] for r in rows] == ["login.failure"] * LIMIT + ["login.rate_limited"], rows
    assert rows[-1]["repeats"] == 2 and rows[-1]["id"] != lim["id"]
    assert w.p.sql(f"SELECT repeats FROM frontdesk.audit_events WHERE id = {lim['id']}") == "10"


# ---------------------------------------------------------------------------
# Append-only, for every role
# ---------------------------------------------------------------------------

def run_psql(db, sql):
    cmd = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", fdtest.PGHOST, "-p",
           str(fdtest.PGPORT), "-U", "postgres", "-d", db, "-c", sql]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def test_no_role_can_update_or_delete_an_event(w):
    t = w.tenant()
    u = w.reseller(t, t)
    bad = "guess-pw-" + uuid.uuid4().hex
    w.secrets.append(bad)
    for _ in range(LIMIT + 2):
        code_of(w.anon.Login, tenant_slug=t.slug, username=u.username, password=bad)
    db = w.p.db.name
    tid = t.id
    before = w.p.sql(f"SELECT md5(string_agg(e::text, '|' ORDER BY id)), count(*) "
                     f"FROM frontdesk.audit_events e WHERE tenant_id = {tid}")
    assert int(before.split("|")[1]) >= 5
    lim = w.p.sql(f"SELECT id FROM frontdesk.audit_events WHERE tenant_id = {tid} "
                  f"AND action = 'login.rate_limited'")
    other = w.p.sql(f"SELECT min(id) FROM frontdesk.audit_events WHERE tenant_id = {tid} "
                    f"AND action <> 'login.rate_limited'")
    owner = w.p.sql("SELECT tableowner FROM pg_tables WHERE schemaname = 'frontdesk' "
                    "AND tablename = 'audit_events'")
    part = w.p.sql(f"SELECT tableoid::regclass FROM frontdesk.audit_events WHERE id = {other}")
    as_tenant = f"SELECT set_config('frontdesk.tenant_id', '{tid}', true);"
    stmts = {
        "UPDATE action": f"UPDATE frontdesk.audit_events SET action = 'x.y' WHERE tenant_id = {tid}",
        "UPDATE actor": f"UPDATE frontdesk.audit_events SET actor = 'admin:1' WHERE id = {other}",
        "UPDATE repeats of another row": f"UPDATE frontdesk.audit_events SET repeats = repeats + 1 "
                                         f"WHERE id = {other}",
        "UPDATE repeats and outcome": f"UPDATE frontdesk.audit_events SET repeats = repeats + 1, "
                                      f"outcome = 'ok' WHERE id = {lim}",
        "UPDATE repeats down": f"UPDATE frontdesk.audit_events SET repeats = 1 WHERE id = {lim}",
        "UPDATE last_at back": f"UPDATE frontdesk.audit_events SET repeats = repeats + 1, "
                               f"last_at = last_at - interval '1 hour' WHERE id = {lim}",
        "DELETE": f"DELETE FROM frontdesk.audit_events WHERE tenant_id = {tid}",
        "DELETE one": f"DELETE FROM frontdesk.audit_events WHERE id = {lim}",
        "TRUNCATE": "TRUNCATE frontdesk.audit_events",
        "UPDATE partition": f"UPDATE {part} SET action = 'x.y' WHERE id = {other}",
        "DELETE partition": f"DELETE FROM {part} WHERE id = {other}",
        "TRUNCATE partition": f"TRUNCATE {part}",
    }
    roles = ["frontdesk_authd", "frontdesk_billingd", "frontdesk_linesd", "frontdesk_routerd", owner,
             "postgres"]
    wrong = []
    for role in roles:
        for name, stmt in stmts.items():
            setrole = "" if role == "postgres" else f"SET LOCAL ROLE {role};"
            # Rolled back whatever happens: a broken trigger must not destroy the rows.
            rc, out, err = run_psql(db, f"BEGIN; {setrole} {as_tenant} {stmt}; ROLLBACK;")
            if rc == 0:
                wrong.append((role, name, "accepted", out))
            elif not re.search(r"append-only|permission denied|must be owner", err):
                wrong.append((role, name, "refused for another reason", err[-300:]))
    assert not wrong, wrong
    # The one exception: authd counting one more repeat of a rate-limited row.
    allowed = (f"UPDATE frontdesk.audit_events SET repeats = repeats + 1, last_at = now() "
               f"WHERE id = {lim}")
    for role in roles:
        setrole = "" if role == "postgres" else f"SET LOCAL ROLE {role};"
        rc, out, err = run_psql(db, f"BEGIN; {setrole} {as_tenant} {allowed}; ROLLBACK;")
        assert (rc == 0) == (role == "frontdesk_authd"), (role, rc, out, err)
    after = w.p.sql(f"SELECT md5(string_agg(e::text, '|' ORDER BY id)), count(*) "
                    f"FROM frontdesk.audit_events e WHERE tenant_id = {tid}")
    assert after == before


# ---------------------------------------------------------------------------
# Who reads what
# ---------------------------------------------------------------------------

def list_all(api, page_size=1000, **filters):
    out, token = [], ""
    while True:
        r = api.ListAuditEvents(page_size=page_size, page_token=token, **filters)
        out += list(r.events)
        token = r.next_page_token
        if not token:
            return out


def test_readers_see_their_tenant_or_their_subtree_only(w):
    t = w.tenant()
    other = w.tenant()
    r1 = w.reseller(t, t)
    r2 = w.reseller(t, r1)
    r3 = w.reseller(t, r2)
    # Something done by each: r1 updates r2, r2 updates r3, r3 changes its notes,
    # the admin suspends r1's... nothing of r2's subtree.
    r1.api.UpdateReseller(reseller_id=r2.id, display_name="by r1")
    r2.api.UpdateReseller(reseller_id=r3.id, display_name="by r2")
    r3.api.UpdateReseller(notes=C.OptionalString(value="by r3"))
    t.api.UpdateReseller(reseller_id=r1.id, display_name="by admin")
    everything = list_all(t.api)
    assert {e.tenant_id for e in everything} == {t.id}
    mine = list_all(r2.api)
    # r2 sees its own and r3's events, never r1's (its parent) nor the admin's.
    assert mine and all(e.actor_path.startswith(r2.path) for e in mine), mine
    want = [e.id for e in everything if e.actor_path.startswith(r2.path)]
    assert [e.id for e in mine] == want
    assert {e.actor_account_id for e in mine} == {r2.account, r3.account}
    assert not any(e.actor_account_id in (r1.account, t.account) for e in mine)
    # Naming r1 (its parent) as the actor finds nothing either.
    assert list_all(r2.api, actor_account_id=r1.account) == []
    assert list_all(r2.api, actor_account_id=t.account) == []
    # r1 sees r1's, r2's and r3's; r3 only its own.
    assert {e.actor_account_id for e in list_all(r1.api)} == {r1.account, r2.account, r3.account}
    assert {e.actor_account_id for e in list_all(r3.api)} == {r3.account}
    # Another tenant's trail: NOT_FOUND for its admins and resellers.
    for who in (t, r2):
        assert code_of(who.api.ListAuditEvents, tenant_id=other.id) == "NOT_FOUND"
    # The platform admin reads any tenant by naming it, and the platform's own with 0.
    assert [e.id for e in list_all(w.pa.auth, tenant_id=t.id)] == [e.id for e in everything]
    platform = list_all(w.pa.auth, tenant_id=0, page_size=50)
    assert all(e.tenant_id == 0 for e in platform)
    # API keys: only with audit_read; a reseller's key reads that reseller's subtree.
    no = w.api_key(t, scopes=[scope("resellers_read")])
    assert code_of(no.api.ListAuditEvents) == "PERMISSION_DENIED"
    yes = w.api_key(r2, scopes=[scope("audit_read")])
    assert [e.id for e in list_all(yes.api)] == [e.id for e in list_all(r2.api)]
    # Services: no access.
    for service, audience in [("edged", "authd"), ("linesd", "authd")]:
        tok = w.anon.IssueServiceToken(service_name=service,
                                       secret=fdstack.EDGED_SECRET if service == "edged" else fdstack.LINESD_SECRET,
                                       audience=audience).token
        w.secrets.append(tok)
        got = code_of(w.anon.with_token(tok).ListAuditEvents, tenant_id=t.id)
        assert got in ("PERMISSION_DENIED", "UNAUTHENTICATED"), (service, got)


def test_paging_and_filters(w):
    t = w.tenant()
    rs = [w.reseller(t, t) for _ in range(3)]
    for r in rs:
        t.api.UpdateReseller(reseller_id=r.id, display_name="again")
    time.sleep(1.2)
    cut = int(time.time())
    time.sleep(1.2)
    t.api.UpdateReseller(reseller_id=rs[0].id, display_name="late")
    w.secrets.append("not-the-pw-1")
    code_of(w.anon.Login, tenant_slug=t.slug, username=rs[1].username, password="not-the-pw-1")
    everything = list_all(t.api)
    ids = [e.id for e in everything]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids) >= 12
    # Pages of 2 give the same list, with no repeat and no gap.
    assert [e.id for e in list_all(t.api, page_size=2)] == ids
    first = t.api.ListAuditEvents(page_size=5)
    assert len(first.events) == 5 and first.next_page_token
    assert [e.id for e in first.events] == ids[:5]
    # Each filter against the same filter applied to the whole list.
    cases = [
        (dict(actor_account_id=t.account), lambda e: e.actor_account_id == t.account),
        (dict(actor_account_id=rs[2].account), lambda e: e.actor_account_id == rs[2].account),
        (dict(target=f"account:{rs[0].id}"), lambda e: e.target == f"account:{rs[0].id}"),
        (dict(action="reseller.update"), lambda e: e.action == "reseller.update"),
        (dict(action="reseller."), lambda e: e.action.startswith("reseller.")),
        (dict(action="login."), lambda e: e.action.startswith("login.")),
        (dict(action="login"), lambda e: e.action == "login"),
        (dict(at_within=C.TimeRange(start_at=cut)), lambda e: e.at >= cut),
        (dict(at_within=C.TimeRange(end_at=cut)), lambda e: e.at < cut),
        (dict(at_within=C.TimeRange(start_at=cut - 1000, end_at=cut)), lambda e: cut - 1000 <= e.at < cut),
        (dict(action="reseller.update", target=f"account:{rs[0].id}"),
         lambda e: e.action == "reseller.update" and e.target == f"account:{rs[0].id}"),
    ]
    for filters, keep in cases:
        want = [e.id for e in everything if keep(e)]
        assert [e.id for e in list_all(t.api, page_size=2, **filters)] == want, filters
    assert len([e for e in everything if e.at >= cut]) == 2
    assert len(list_all(t.api, action="reseller.update", target=f"account:{rs[0].id}")) == 2
    assert list_all(t.api, action="login.failure")[0].outcome == A.AUDIT_OUTCOME_FAILED
    # Bad filters name the field.
    for filters, field in [(dict(action="login.%"), "action"), (dict(action="x" * 101), "action"),
                           (dict(actor_account_id=-1), "actor_account_id"),
                           (dict(at_within=C.TimeRange(start_at=-1)), "at_within"),
                           (dict(at_within=C.TimeRange(start_at=cut, end_at=cut)), "at_within"),
                           (dict(page_token="bogus"), "page_token"), (dict(page_size=-1), "page_size"),
                           (dict(target="a\u202eb"), "target")]:
        msg = expect("INVALID_ARGUMENT", t.api.ListAuditEvents, **filters)
        assert field in msg, (filters, msg)


# ---------------------------------------------------------------------------
# Last: no secret anywhere in the trail
# ---------------------------------------------------------------------------

def test_zz_no_password_token_or_key_in_any_row(w):
    rows = w.p.sql("SELECT e::text FROM frontdesk.audit_events e")
    assert int(w.p.sql("SELECT count(*) FROM frontdesk.audit_events")) > 50
    secrets = {s for s in w.secrets if s and len(s) >= 8}
    assert len(secrets) > 40
    leaked = [s[:12] + "..." for s in secrets if s in rows]
    assert not leaked, leaked
