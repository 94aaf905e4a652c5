"""Brands at the edge: each tenant reached by its own approved host names
(authd's RequestHost / ApproveHost, read by edged through ListBrandHosts),
through real HTTP requests with the Host a player would send.

- a requested (pending) host serves nothing until a platform admin approves
  it; then the brand's players log in and their playlist URLs carry that host
  and no /t/ prefix; the name in any case, with a trailing dot or a port;
- a host requested by a second tenant is refused;
- /t/{slug}/ is refused on a brand's host (its own slug or another's);
- two brands on one edged: a line of one is unknown at the other's host, for
  the login, the playlist and the hand-off alike;
- a suspended tenant's hosts stop serving and come back on reactivation; a
  deleted host stops serving; an unknown host is a 404 saying so.
"""
import http.client
import json
import time
import urllib.parse

import pytest

import fdstack
from fdstack import L, ikey, uniq

REFRESH_MS = 200
SEEN_WITHIN = 6.0        # s: a host change reaching edged (refresh 0.2 s; a suspension through authd's status cache, up to 5 s)
BAD_LOGIN = b'{"user_info":{"auth":0}}'


@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(edged_env={"FRONTDESK_EDGED_HOSTS_REFRESH_MS": str(REFRESH_MS)})
    yield s
    s.close()


def request(p, path, host):
    c = http.client.HTTPConnection("127.0.0.1", p.edged.port, timeout=10)
    try:
        c.request("GET", path, headers={"Host": host, "User-Agent": "IPTVSmarters/3.1"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def brand(p):
    """A tenant with a reseller, one stream in a bouquet, a package and a line."""
    t = p.tenant()
    r = p.reseller(t, credits=1000)
    s = t.lines.CreateStream(name=uniq("Channel"), kind=L.STREAM_KIND_LIVE, category="News",
                             idempotency_key=ikey()).stream
    b = t.lines.CreateBouquet(name=uniq("bq"), stream_ids=[s.id], idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name=uniq("pkg"), duration_days=30, credit_cost=1, max_connections=2,
                                bouquet_ids=[b.id], idempotency_key=ikey()).package
    line = r.lines.CreateLine(reseller_id=r.id, package_id=pkg.id, idempotency_key=ikey()).line
    t.line, t.stream = line, s.id
    return t


def login(p, host, line, prefix=""):
    q = urllib.parse.urlencode({"username": line.username, "password": line.password})
    return request(p, f"{prefix}/player_api.php?{q}", host)


def wait(pred, what):
    deadline = time.time() + SEEN_WITHIN
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"not within {SEEN_WITHIN} s: {what}")


def serves(p, host, t):
    status, body = login(p, host, t.line)
    return status == 200 and json.loads(body).get("user_info", {}).get("auth") == 1


def unknown(p, host, t):
    status, body = login(p, host, t.line)
    return status == 404 and b"unknown host" in body


@pytest.fixture(scope="module")
def two(p):
    a, b = brand(p), brand(p)
    a.host, b.host = f"{uniq('tv')}.brand-a.test", f"{uniq('tv')}.brand-b.test"
    return a, b


def test_a_pending_host_serves_nothing_until_approved(p, two):
    a, _ = two
    h = a.auth.RequestHost(host_name=a.host.upper() + ".").host
    assert h.host_name == a.host and h.status == fdstack.A.HOST_STATUS_PENDING
    time.sleep(4 * REFRESH_MS / 1000)
    assert unknown(p, a.host, a)
    p.pa.auth.ApproveHost(host_name=a.host, approve=True)
    wait(lambda: serves(p, a.host, a), "the approved host serving its brand")
    # As a player may write it: upper case, trailing dot, a port.
    assert serves(p, f"{a.host.upper()}.:{p.edged.port}", a)


def test_the_brand_host_writes_its_own_urls(p, two):
    a, _ = two
    wait(lambda: serves(p, a.host, a), "a's host")
    host = f"{a.host}:{p.edged.port}"
    q = urllib.parse.urlencode({"username": a.line.username, "password": a.line.password, "type": "m3u_plus",
                                "output": "m3u8"})
    status, body = request(p, f"/get.php?{q}", host)
    assert status == 200, body
    text = body.decode()
    assert f"http://{host}/live/" in text and "/t/" not in text, text
    assert f'x-tvg-url="http://{host}/xmltv.php?' in text, text
    info = json.loads(login(p, host, a.line)[1])["server_info"]
    assert (info["url"], info["port"]) == (a.host, str(p.edged.port))


def test_a_host_another_tenant_holds_is_refused(p, two):
    a, b = two
    assert fdstack.fdapi.code_of(b.auth.RequestHost, host_name=a.host) == "ALREADY_EXISTS"
    # Still a's.
    assert serves(p, a.host, a)


def test_two_brands_on_one_edge_know_only_their_own_lines(p, two):
    a, b = two
    b.auth.RequestHost(host_name=b.host)
    p.pa.auth.ApproveHost(host_name=b.host, approve=True)
    wait(lambda: serves(p, b.host, b), "b's host")
    # a's line at b's host: unknown, exactly as a wrong password.
    status, body = login(p, b.host, a.line)
    assert (status, body) == (200, BAD_LOGIN)
    q = urllib.parse.urlencode({"username": a.line.username, "password": a.line.password})
    status, _ = request(p, f"/get.php?{q}", b.host)
    assert status == 403
    status, body = request(p, f"/live/{a.line.username}/{a.line.password}/{a.stream}.m3u8", b.host)
    assert status == 403 and b"invalid credentials" in body, body
    # And the other way round.
    assert login(p, a.host, b.line) == (200, BAD_LOGIN)


def test_the_t_prefix_is_refused_on_a_brand_host(p, two):
    a, b = two
    for host, slug in [(a.host, a.slug), (a.host, b.slug), (b.host, a.slug)]:
        status, body = login(p, host, a.line, prefix=f"/t/{slug}")
        assert status == 404 and b"platform's own host names only" in body, (host, slug, body)
    # On the platform's own host name it is how a brand is reached.
    assert serves(p, "localhost", a) is False   # no prefix: no brand
    status, body = login(p, "localhost", a.line, prefix=f"/t/{a.slug}")
    assert status == 200 and json.loads(body)["user_info"]["auth"] == 1


def test_unknown_hosts_and_a_suspended_tenant(p, two):
    a, _ = two
    status, body = login(p, "nobody.example", a.line)
    assert status == 404 and b"unknown host" in body
    p.pa.auth.SuspendTenant(tenant_id=a.tenant, reason="unpaid")
    wait(lambda: unknown(p, a.host, a), "a suspended tenant's host stops serving")
    p.pa.auth.SuspendTenant(tenant_id=a.tenant, reactivate=True)
    wait(lambda: serves(p, a.host, a), "a reactivated tenant's host serving again")


def test_a_deleted_host_stops_serving(p):
    c = brand(p)
    host = f"{uniq('tv')}.brand-c.test"
    p.pa.auth.RequestHost(tenant_id=c.tenant, host_name=host)   # a platform admin's: approved at once
    wait(lambda: serves(p, host, c), "the host a platform admin gave")
    c.auth.DeleteHost(host_name=host)
    wait(lambda: unknown(p, host, c), "a deleted host stops serving")
