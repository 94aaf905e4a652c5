"""test_hosts - brand host names through authd (RequestHost, ApproveHost,
ListHosts, DeleteHost, ListBrandHosts) against a real authd and PostgreSQL:
normalisation, the one holder of a name across the platform (and nothing
said of who holds it), the platform's reserved names, approval, the edge's
view (approved hosts of active tenants, every active tenant's slug),
suspension, isolation, scopes and roles, bad input changing nothing, and
the audit trail."""
import json
import threading
import uuid

import pytest

import fdapi
import fdstack
import fdtest
from fdapi import code_of, expect, outcome, scope

A = fdapi.auth_pb2
C = fdapi.common_pb2
PENDING = A.HOST_STATUS_PENDING
APPROVED = A.HOST_STATUS_APPROVED
REJECTED = A.HOST_STATUS_REJECTED

PLATFORM_HOSTS = " Panel.Example.NET ,localhost,127.0.0.1,, [::1]"


def uniq(prefix="h"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def ns(**kw):
    return fdstack.ns(**kw)


@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_replicas=0, authd_env={"FRONTDESK_PLATFORM_HOSTS": PLATFORM_HOSTS})
    yield s
    s.close()


@pytest.fixture(scope="module")
def edge(p):
    """AuthService with the HTTP edge's service token (hosts_resolve)."""
    return fdapi.Auth(p.ach, p.service_token("edged", "authd"))


def brands(edge):
    r = edge.ListBrandHosts()
    return ({h.host_name: (h.tenant_id, h.tenant_slug) for h in r.hosts},
            {t.tenant_id: (t.host_name, t.tenant_slug) for t in r.tenants})


def snapshot(p):
    """The brand host table and the audit trail's length, as postgres sees them."""
    return (p.sql("SELECT md5(coalesce(string_agg(b::text, '|' ORDER BY host_name), '')) "
                  "FROM frontdesk.brand_hosts b"),
            p.sql("SELECT count(*) FROM frontdesk.audit_events"))


def host_events(p, tenant, since=0):
    rows = p.sql(f"SELECT json_build_object('id', id, 'action', action, 'target', target, 'actor', actor, "
                 f"'outcome', outcome, 'detail', detail) FROM frontdesk.audit_events "
                 f"WHERE tenant_id = {tenant} AND action LIKE 'host.%' AND id > {since} ORDER BY id")
    return [json.loads(x) for x in rows.split("\n")] if rows else []


def last_event_id(p):
    return int(p.sql("SELECT coalesce(max(id), 0) FROM frontdesk.audit_events"))


def row_id(p, name):
    return int(p.sql(f"SELECT id FROM frontdesk.brand_hosts WHERE host_name = '{name}'"))


def list_all(api, **kw):
    out, token = [], ""
    while True:
        r = api.ListHosts(page_token=token, **kw)
        out += list(r.hosts)
        token = r.next_page_token
        if not token:
            return out


# ---------------------------------------------------------------------------
# Requests and normalisation
# ---------------------------------------------------------------------------

def test_request_normalises_and_waits_for_approval(p, edge):
    t = p.tenant()
    base = uniq("brand")
    since = last_event_id(p)
    h = t.auth.RequestHost(host_name=f"TV.{base.upper()}.Example.COM.:8443").host
    name = f"tv.{base}.example.com"
    assert h.host_name == name and h.tenant_id == t.tenant and h.status == PENDING, h
    assert h.reason == "" and h.created_at > 0 and h.updated_at >= h.created_at
    # The same name in any spelling is the same request: the first answer, nothing changed.
    for spelling in [name, name + ".", name.upper(), f"{name}:80", f"{name}.:443", f"Tv.{base}.EXAMPLE.com"]:
        again = t.auth.RequestHost(host_name=spelling).host
        assert again == h, (spelling, again)
    assert [e["action"] for e in host_events(p, t.tenant, since)] == ["host.request"]
    # IDN: U-labels become punycode A-labels (NFC, non-transitional).
    idn = t.auth.RequestHost(host_name=f"Bücher.{base}.example").host
    assert idn.host_name == f"xn--bcher-kva.{base}.example" and idn.status == PENDING
    assert t.auth.RequestHost(host_name=f"bu\u0308cher.{base}.example").host == idn   # decomposed
    assert t.auth.RequestHost(host_name=f"xn--bcher-kva.{base}.EXAMPLE").host == idn
    sz = t.auth.RequestHost(host_name=f"straße.{base}.example").host
    assert sz.host_name == f"xn--strae-oqa.{base}.example"
    # Pending names serve nothing yet.
    hosts, tenants = brands(edge)
    assert name not in hosts and idn.host_name not in hosts
    assert tenants[t.tenant] == ("", t.slug)
    listed = t.auth.ListHosts().hosts
    assert {x.host_name for x in listed} == {name, idn.host_name, sz.host_name}


def test_approve_reject_and_the_edge_view(p, edge):
    t = p.tenant()
    name = f"{uniq()}.example.org"
    h = t.auth.RequestHost(host_name=name).host
    since = last_event_id(p)
    ok = p.pa.auth.ApproveHost(host_name=name.upper() + ".", approve=True).host
    assert ok.status == APPROVED and ok.host_name == name and ok.tenant_id == t.tenant
    assert ok.created_at == h.created_at and ok.updated_at >= h.updated_at
    hosts, tenants = brands(edge)
    assert hosts[name] == (t.tenant, t.slug)
    assert tenants[t.tenant] == ("", t.slug)
    # Every tenants entry is an active tenant with an empty host name; no platform.
    r = edge.ListBrandHosts()
    assert all(x.host_name == "" and x.tenant_id > 0 and x.tenant_slug for x in r.tenants)
    assert all(x.host_name and x.tenant_slug for x in r.hosts)
    # Approving again changes nothing and records nothing.
    assert p.pa.auth.ApproveHost(host_name=name, approve=True).host == ok
    # Rejected: out of the edge's view, reason kept; the name stays the tenant's.
    no = p.pa.auth.ApproveHost(host_name=name, approve=False, reason="trademark: not yours").host
    assert no.status == REJECTED and no.reason == "trademark: not yours"
    assert name not in brands(edge)[0]
    assert list(t.auth.ListHosts(status=REJECTED).hosts) == [no]
    got, what = outcome(t.auth.RequestHost, host_name=name)
    assert got == "ALREADY_EXISTS" and "rejected" in what and "DeleteHost" in what, what
    # Approved after all: the reason goes.
    back = p.pa.auth.ApproveHost(host_name=name, approve=True, reason="cleared by legal").host
    assert back.status == APPROVED and back.reason == ""
    assert name in brands(edge)[0]
    ev = host_events(p, t.tenant, since)
    assert [e["action"] for e in ev] == ["host.approve", "host.reject", "host.approve"], ev
    target = f"host:{row_id(p, name)}"
    for e in ev:
        assert e["target"] == target and e["actor"] == f"admin:{p.pa.account}" and e["outcome"] == "ok", e
        assert e["detail"]["host_name"] == name
    assert ev[0]["detail"] == {"host_name": name, "status": "approved", "was": "pending"}
    assert ev[1]["detail"] == {"host_name": name, "status": "rejected", "was": "approved",
                               "reason": "trademark: not yours"}
    assert ev[2]["detail"]["reason"] == "cleared by legal" and ev[2]["detail"]["was"] == "rejected"
    # Unknown names.
    for unknown in [f"{uniq()}.example.org", "nobody.example"]:
        got, what = outcome(p.pa.auth.ApproveHost, host_name=unknown, approve=True)
        assert got == "NOT_FOUND" and unknown in what, what


def test_platform_admin_requests_are_approved_at_once(p, edge):
    t = p.tenant()
    name = f"{uniq()}.example.net"
    since = last_event_id(p)
    h = p.pa.auth.RequestHost(tenant_id=t.tenant, host_name=name).host
    assert h.status == APPROVED and h.tenant_id == t.tenant
    assert brands(edge)[0][name] == (t.tenant, t.slug)
    ev = host_events(p, t.tenant, since)
    assert [(e["action"], e["detail"]["status"], e["actor"]) for e in ev] == \
        [("host.request", "approved", f"admin:{p.pa.account}")]
    # A name the tenant asked for itself: the platform admin's request approves it.
    pend = t.auth.RequestHost(host_name=f"x.{name}").host
    assert pend.status == PENDING
    assert p.pa.auth.RequestHost(tenant_id=t.tenant, host_name=f"x.{name}").host.status == APPROVED
    assert host_events(p, t.tenant, since)[-1]["action"] == "host.approve"
    # The platform itself holds none; an unknown tenant is not found.
    got, what = outcome(p.pa.auth.RequestHost, host_name=f"{uniq()}.example.net")
    assert got == "INVALID_ARGUMENT" and what.startswith("tenant_id:"), what
    assert code_of(p.pa.auth.RequestHost, tenant_id=987654321, host_name=f"{uniq()}.example.net") == "NOT_FOUND"


# ---------------------------------------------------------------------------
# One holder per name; nothing said of who
# ---------------------------------------------------------------------------

def test_a_name_has_one_holder_and_its_state_does_not_leak(p, edge):
    a, b = p.tenant(), p.tenant()
    name = f"{uniq()}.example.com"
    a.auth.RequestHost(host_name=name)
    before = snapshot(p)

    def refusal():
        got, what = outcome(b.auth.RequestHost, host_name=name.upper() + ":443")
        assert got == "ALREADY_EXISTS", (got, what)
        assert what == f'host_name: "{name}" is taken', what     # nothing of who, nor how
        return what
    pending = refusal()
    assert snapshot(p) == before
    p.pa.auth.ApproveHost(host_name=name, approve=True)
    approved = refusal()
    p.pa.auth.ApproveHost(host_name=name, approve=False, reason="no")
    rejected = refusal()
    assert pending == approved == rejected
    # B's list has none of it; B cannot delete it; A's row is as it was.
    assert list_all(b.auth) == []
    row = p.sql(f"SELECT b::text FROM frontdesk.brand_hosts b WHERE host_name = '{name}'")
    got, what = outcome(b.auth.DeleteHost, host_name=name)
    nobody = f"{uniq()}.example.com"
    got2, what2 = outcome(b.auth.DeleteHost, host_name=nobody)
    assert (got, got2) == ("NOT_FOUND", "NOT_FOUND")
    assert what.replace(name, "N") == what2.replace(nobody, "N")       # the same answer
    assert p.sql(f"SELECT b::text FROM frontdesk.brand_hosts b WHERE host_name = '{name}'") == row
    # Once A lets it go, B may have it.
    a.auth.DeleteHost(host_name=name)
    assert b.auth.RequestHost(host_name=name).host.tenant_id == b.tenant


def test_two_tenants_asking_at_once_get_one_answer_each(p):
    ts = [p.tenant() for _ in range(4)]
    name = f"{uniq()}.example.com"
    results = [None] * len(ts)
    start = threading.Barrier(len(ts))

    def ask(i):
        start.wait()
        results[i] = outcome(ts[i].auth.RequestHost, host_name=name)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(ts))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    codes = sorted(r[0] for r in results)
    assert codes == ["ALREADY_EXISTS"] * 3 + ["OK"], results
    [winner] = [i for i, r in enumerate(results) if r[0] == "OK"]
    assert p.sql(f"SELECT tenant_id FROM frontdesk.brand_hosts WHERE host_name = '{name}'") == \
        str(ts[winner].tenant)


# ---------------------------------------------------------------------------
# The platform's own names
# ---------------------------------------------------------------------------

def test_platform_host_names_and_their_subdomains_are_reserved(p):
    t = p.tenant()
    before = snapshot(p)
    for name in ["panel.example.net", "PANEL.example.net.", "panel.example.net:443", "a.panel.example.net",
                 "x.y.Panel.Example.Net", "x.localhost", "LOCALHOST.localhost."]:
        for who, kw in [(t.auth, {}), (p.pa.auth, {"tenant_id": t.tenant})]:
            got, what = outcome(who.RequestHost, host_name=name, **kw)
            assert got == "INVALID_ARGUMENT" and "reserved" in what and what.startswith("host_name:"), \
                (name, got, what)
    assert snapshot(p) == before
    # Not below them: free to ask for.
    for name in ["apanel.example.net", "panel.example.network", "example.net", "localhost.example"]:
        assert t.auth.RequestHost(host_name=name).host.status == PENDING, name
        t.auth.DeleteHost(host_name=name)


def test_platform_hosts_setting_is_checked_at_start(p):
    for bad in ["bad_name.example", "ok.example,-bad.example", "a..b"]:
        s = fdtest.Service("authd", p.db.url, env={"FRONTDESK_PLATFORM_HOSTS": bad})
        try:
            rc = s.proc.wait(15)
        finally:
            if s.proc.poll() is None:
                s.stop()
        out = s.output()
        assert rc != 0 and "FRONTDESK_PLATFORM_HOSTS" in out, (bad, rc, out[-800:])


# ---------------------------------------------------------------------------
# Suspension
# ---------------------------------------------------------------------------

def test_suspended_tenants_leave_the_edge_view_and_come_back(p, edge):
    t, other = p.tenant(), p.tenant()
    name = f"{uniq()}.example.tv"
    kept = f"{uniq()}.example.tv"
    p.pa.auth.RequestHost(tenant_id=t.tenant, host_name=name)
    p.pa.auth.RequestHost(tenant_id=other.tenant, host_name=kept)
    hosts, tenants = brands(edge)
    assert name in hosts and t.tenant in tenants
    p.pa.auth.SuspendTenant(tenant_id=t.tenant, reason="unpaid")
    hosts, tenants = brands(edge)
    assert name not in hosts and t.tenant not in tenants
    assert hosts[kept] == (other.tenant, other.slug) and other.tenant in tenants
    # Still held while suspended: nobody else may take it.
    assert code_of(other.auth.RequestHost, host_name=name) == "ALREADY_EXISTS"
    assert [h.host_name for h in p.pa.auth.ListHosts(tenant_id=t.tenant).hosts] == [name]
    p.pa.auth.SuspendTenant(tenant_id=t.tenant, reactivate=True)
    hosts, tenants = brands(edge)
    assert hosts[name] == (t.tenant, t.slug) and tenants[t.tenant] == ("", t.slug)


# ---------------------------------------------------------------------------
# Listing, paging, deleting
# ---------------------------------------------------------------------------

def test_list_pages_filters_and_all_tenants(p):
    a, b = p.tenant(), p.tenant()
    base = uniq()
    names = [f"n{i}.{base}.example" for i in range(5)]
    for n in names:
        a.auth.RequestHost(host_name=n)
    p.pa.auth.ApproveHost(host_name=names[1], approve=True)
    p.pa.auth.ApproveHost(host_name=names[3], approve=False, reason="no")
    bname = f"b.{base}.example"
    b.auth.RequestHost(host_name=bname)
    pages, token = [], ""
    while True:
        r = a.auth.ListHosts(page_size=2, page_token=token)
        pages.append([h.host_name for h in r.hosts])
        token = r.next_page_token
        if not token:
            break
    assert pages == [names[0:2], names[2:4], names[4:5]]
    assert [h.host_name for h in a.auth.ListHosts(status=APPROVED).hosts] == [names[1]]
    assert [h.host_name for h in a.auth.ListHosts(status=REJECTED).hosts] == [names[3]]
    assert [h.host_name for h in a.auth.ListHosts(status=PENDING).hosts] == [names[0], names[2], names[4]]
    assert [h.host_name for h in a.auth.ListHosts(tenant_id=a.tenant).hosts] == names
    # The platform admin: one tenant by naming it, or every one.
    assert [h.host_name for h in list_all(p.pa.auth, tenant_id=b.tenant)] == [bname]
    every = list_all(p.pa.auth, all_tenants=True, page_size=3)
    mine = [h for h in every if h.host_name.endswith(f".{base}.example")]
    assert [h.host_name for h in mine] == names + [bname]
    assert {h.tenant_id for h in mine} == {a.tenant, b.tenant}
    assert len({h.host_name for h in every}) == len(every)
    assert int(p.sql("SELECT count(*) FROM frontdesk.brand_hosts")) == len(every)
    pend = list_all(p.pa.auth, all_tenants=True, status=PENDING)
    assert all(h.status == PENDING for h in pend) and bname in {h.host_name for h in pend}
    # Wrong combinations.
    got, what = outcome(p.pa.auth.ListHosts)
    assert got == "INVALID_ARGUMENT" and what.startswith("tenant_id:"), what
    got, what = outcome(p.pa.auth.ListHosts, all_tenants=True, tenant_id=a.tenant)
    assert got == "INVALID_ARGUMENT" and what.startswith("all_tenants:"), what
    assert code_of(a.auth.ListHosts, all_tenants=True) == "PERMISSION_DENIED"
    assert code_of(a.auth.ListHosts, tenant_id=b.tenant) == "NOT_FOUND"
    assert code_of(b.auth.ListHosts, tenant_id=a.tenant) == "NOT_FOUND"


def test_delete(p, edge):
    a, b = p.tenant(), p.tenant()
    base = uniq()
    own, theirs, named = (f"{x}.{base}.example" for x in ("own", "theirs", "named"))
    p.pa.auth.RequestHost(tenant_id=a.tenant, host_name=own)
    p.pa.auth.RequestHost(tenant_id=b.tenant, host_name=theirs)
    p.pa.auth.RequestHost(tenant_id=b.tenant, host_name=named)
    since = last_event_id(p)
    rid = row_id(p, own)
    assert own in brands(edge)[0]
    a.auth.DeleteHost(host_name=own.upper() + ".")
    assert own not in brands(edge)[0] and list_all(a.auth) == []
    assert code_of(a.auth.DeleteHost, host_name=own) == "NOT_FOUND"     # once
    # A platform admin: by name alone, or naming the tenant that holds it.
    assert code_of(p.pa.auth.DeleteHost, tenant_id=a.tenant, host_name=theirs) == "NOT_FOUND"
    p.pa.auth.DeleteHost(host_name=theirs)
    p.pa.auth.DeleteHost(tenant_id=b.tenant, host_name=named)
    assert list_all(b.auth) == []
    assert code_of(p.pa.auth.DeleteHost, host_name=theirs) == "NOT_FOUND"
    ea, eb = host_events(p, a.tenant, since), host_events(p, b.tenant, since)
    assert [(e["action"], e["target"], e["actor"], e["detail"]) for e in ea] == \
        [("host.delete", f"host:{rid}", f"admin:{a.account}", {"host_name": own, "status": "approved"})]
    assert [(e["action"], e["detail"]["host_name"], e["actor"]) for e in eb] == \
        [("host.delete", theirs, f"admin:{p.pa.account}"), ("host.delete", named, f"admin:{p.pa.account}")]


# ---------------------------------------------------------------------------
# Who may call what
# ---------------------------------------------------------------------------

def test_roles_scopes_and_credentials(p, edge):
    t = p.tenant()
    r = p.reseller(t)
    name = f"{uniq()}.example.com"
    t.auth.RequestHost(host_name=name)
    # People's scopes: admins manage host names, nobody but the edge resolves them.
    for who in (t, p.pa):
        got = fdapi.scope_names(who.auth.WhoAmI().caller.scopes)
        assert {"hosts_read", "hosts_write"} <= got, got
        assert not got & {"hosts_resolve", "line_channels_read", "playback_events", "sessions_report"}, got
    assert not fdapi.scope_names(r.auth.WhoAmI().caller.scopes) & {"hosts_read", "hosts_write",
                                                                    "hosts_resolve"}
    before = snapshot(p)
    # Resellers: nothing.
    for call, kw in [(r.auth.RequestHost, dict(host_name=f"{uniq()}.example.com")),
                     (r.auth.ListHosts, {}), (r.auth.DeleteHost, dict(host_name=name)),
                     (r.auth.ApproveHost, dict(host_name=name, approve=True)), (r.auth.ListBrandHosts, {})]:
        assert code_of(call, **kw) == "PERMISSION_DENIED", call.__name__
    # Tenant admins do not approve, nor resolve.
    assert code_of(t.auth.ApproveHost, host_name=name, approve=True) == "PERMISSION_DENIED"
    assert code_of(t.auth.ListBrandHosts) == "PERMISSION_DENIED"
    assert code_of(p.pa.auth.ListBrandHosts) == "PERMISSION_DENIED"
    # Services: only the edge's token, and only ListBrandHosts.
    linesd = fdapi.Auth(p.ach, p.service_token("linesd", "authd"))
    assert code_of(linesd.ListBrandHosts) == "PERMISSION_DENIED"
    for call, kw in [(edge.RequestHost, dict(tenant_id=t.tenant, host_name=f"{uniq()}.example.com")),
                     (edge.ListHosts, dict(tenant_id=t.tenant)),
                     (edge.DeleteHost, dict(tenant_id=t.tenant, host_name=name)),
                     (edge.ApproveHost, dict(host_name=name, approve=True))]:
        assert code_of(call, **kw) == "PERMISSION_DENIED", call.__name__
    # No credential.
    assert code_of(p.anon.ListBrandHosts) == "UNAUTHENTICATED"
    assert code_of(p.anon.ListHosts) == "UNAUTHENTICATED"
    # No API key gets the edge's scope.
    for who in (t, p.pa):
        assert code_of(who.auth.CreateApiKey, name="k", scopes=[scope("hosts_resolve")]) == "PERMISSION_DENIED"
    assert snapshot(p) == before
    # API keys of a tenant admin: as their scopes say.
    ro = t.auth.CreateApiKey(name="ro", scopes=[scope("hosts_read")])
    rw = t.auth.CreateApiKey(name="rw", scopes=[scope("hosts_write"), scope("hosts_read")])
    full = t.auth.CreateApiKey(name="full")
    assert {"hosts_read", "hosts_write"} <= fdapi.scope_names(full.api_key.scopes)
    assert "hosts_resolve" not in fdapi.scope_names(full.api_key.scopes)
    ro_api, rw_api = p.anon.with_token(ro.secret), p.anon.with_token(rw.secret)
    assert [h.host_name for h in ro_api.ListHosts().hosts] == [name]
    assert code_of(ro_api.RequestHost, host_name=f"{uniq()}.example.com") == "PERMISSION_DENIED"
    assert code_of(ro_api.DeleteHost, host_name=name) == "PERMISSION_DENIED"
    made = rw_api.RequestHost(host_name=f"{uniq()}.example.com").host
    assert made.tenant_id == t.tenant and made.status == PENDING
    ev = host_events(p, t.tenant)[-1]
    assert ev["actor"] == f"apikey:{rw.api_key.id}" and ev["detail"]["host_name"] == made.host_name
    assert code_of(rw_api.ListBrandHosts) == "PERMISSION_DENIED"
    # A key that carries hosts_resolve anyway (made before the scope was the edge's alone).
    p.sql(f"UPDATE frontdesk.api_keys SET scopes = array_append(scopes, 'hosts_resolve') "
          f"WHERE tenant_id = {t.tenant} AND id = {full.api_key.id}")
    old = p.anon.with_token(full.secret)
    assert "hosts_resolve" in fdapi.scope_names(old.WhoAmI().caller.scopes)
    assert code_of(old.ListBrandHosts) == "PERMISSION_DENIED"


# ---------------------------------------------------------------------------
# Bad input: refused, naming the field, changing nothing
# ---------------------------------------------------------------------------

def test_bad_input_changes_nothing(p):
    t = p.tenant()
    held = f"{uniq()}.example.com"
    t.auth.RequestHost(host_name=held)
    label64 = "a" * 64
    n254 = ".".join(["a" * 63] * 3 + ["a" * 62])
    before = snapshot(p)
    bad_names = {
        "": "required", "127.0.0.1": "IP address", "127.0.0.1:8080": "IP address", "127.1": "IP address",
        "[::1]": "IP address", "[::1]:443": "IP address", "2001:db8::1": "IP address",
        "0x7f.1": "IP address", "example.123": "number", "a..b.com": "empty label", ".a.com": "empty label",
        "-a.com": "'-'", "a-.com": "'-'", "%": "'%'", "a%2eb.com": "'%'", "a b.com": "spaces",
        " a.com": "spaces", "a_b.com": "'_'", "a/b.com": "'/'", f"{label64}.com": "63", n254: "253",
        "x" * 5000: "1024 bytes", "example.com:99999": "port", "example.com:http": "port",
        "xn--zz.example": "internationalised", "intranet": "single label", "bücher": "single label",
        "a\u202eb.com": "internationalised", "a\tb.com": "0x09",
    }
    for name, part in bad_names.items():
        for who, kw in [(t.auth, {}), (p.pa.auth, {"tenant_id": t.tenant})]:
            got, what = outcome(who.RequestHost, host_name=name, **kw)
            assert got == "INVALID_ARGUMENT", (name, got, what)
            assert what.startswith("host_name: ") and part in what, (name, what)
            assert len(what) < 300
        for call, kw in [(t.auth.DeleteHost, {}), (p.pa.auth.ApproveHost, {"approve": True})]:
            if name in ("intranet", "bücher"):
                continue            # a single label is a host name; just none a brand holds
            got, what = outcome(call, host_name=name, **kw)
            assert got == "INVALID_ARGUMENT" and what.startswith("host_name: "), (call.__name__, name, got, what)
    # Not UTF-8 at all: the runtime refuses the bytes before the handler.
    msg = A.RequestHostRequest(host_name="b\u00fccher.example")
    raw = fdapi.replace_bytes(msg, "\u00fc".encode(), b"\xfc\xfc")
    assert code_of(t.auth.raw, "RequestHost", raw) == "INVALID_ARGUMENT"
    # Reasons, statuses, pages.
    cases = [
        (p.pa.auth.ApproveHost, dict(host_name=held, approve=False), "reason:"),          # required to reject
        (p.pa.auth.ApproveHost, dict(host_name=held, approve=False, reason="x" * 501), "reason:"),
        (p.pa.auth.ApproveHost, dict(host_name=held, approve=False, reason="a\nb"), "reason:"),
        (p.pa.auth.ApproveHost, dict(host_name=held, approve=False, reason="   "), "reason:"),
        (p.pa.auth.ApproveHost, dict(host_name=held, approve=True, reason="\u202eevil"), "reason:"),
        (t.auth.ListHosts, dict(status=99), "status:"),
        (t.auth.ListHosts, dict(page_size=-1), "page_size"),
        (t.auth.ListHosts, dict(page_token="zzz"), "page_token"),
        (t.auth.RequestHost, dict(tenant_id=-1, host_name="ok.example.com"), "tenant_id"),
    ]
    for call, kw, part in cases:
        got, what = outcome(call, **kw)
        assert got == "INVALID_ARGUMENT" and part in what, (call.__name__, kw, got, what)
    assert snapshot(p) == before
    # The same input made right works (the checks were what refused it).
    assert t.auth.RequestHost(host_name="ok-" + held).host.status == PENDING
