"""test_edge_player - edged's player API, playlists and XMLTV, through real
HTTP clients (http.client, urllib, curl) against a real Stack (authd,
billingd, linesd, edged) and its PostgreSQL:

- player_api.php's login payload, field by field and type by type (as
  shared/notes/player-protocols.md lists them); one answer for a wrong
  password, an unknown user and missing credentials; Expired, Banned and
  Disabled lines (also a suspended reseller's); POST forms; unknown actions
  answer the login payload; live categories (ids stable across calls and
  catalog changes) and streams (bouquet order, disabled ones left out,
  category filter, arrays); the empty VOD, series and EPG shapes; the rate
  limit (429 + Retry-After);
- get.php: m3u and m3u_plus to the byte (CRLF, no BOM, the x-tvg-url of
  this brand), URLs from the Host and port the player used (two hosts, two
  URL sets), credentials percent-encoded, quotes in names, formats refused
  when the line may not play them, hls = m3u8, unknown type or output;
- a 5,000-stream playlist: timed, answered from the cache while linesd's
  catalog read is blocked, and a catalog change seen within a second;
- xmltv.php parsed with xml.etree;
- no password in edged's log.
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdedge  # noqa: E402
import fdstack  # noqa: E402
import fdtest  # noqa: E402
from fdstack import ikey, ns, uniq  # noqa: E402

L = fdstack.L
C = fdstack.C
A = fdstack.A

HOSTS = ("localhost", "tv-a.test", "tv-b.test")   # the platform's own host names here
LINESD_ENV = {
    # Per client address: many tests fail logins from loopback on purpose.
    "FRONTDESK_PLAYBACK_FAIL_MAX_IP": "100000",
    "FRONTDESK_PLAYBACK_FAIL_MAX_USER": "5",
}
EDGED_ENV = {
    "FRONTDESK_PLATFORM_HOSTS": ",".join(HOSTS),
    "FRONTDESK_EDGED_TRUSTED_PROXIES": "127.0.0.1",
    "FRONTDESK_LOG_LEVEL": "info",
}
BAD_LOGIN = b'{"user_info":{"auth":0}}'
USER_INFO_KEYS = ["username", "password", "message", "auth", "status", "exp_date", "is_trial", "active_cons",
                  "created_at", "max_connections", "allowed_output_formats"]
SERVER_INFO_KEYS = ["url", "port", "https_port", "server_protocol", "rtmp_port", "timezone", "timestamp_now",
                    "time_now"]
STREAM_KEYS = ["num", "name", "stream_type", "stream_id", "stream_icon", "epg_channel_id", "added", "category_id",
               "category_ids", "custom_sid", "tv_archive", "direct_source", "tv_archive_duration", "thumbnail"]


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def request(p, path, host="localhost", method="GET", body=None, headers=None, port=None):
    """One request to edged with the Host header host:port (the edge's own
    port unless told); returns ns(status, headers (lower-case), body)."""
    port = port or p.edged.port
    c = http.client.HTTPConnection("127.0.0.1", p.edged.port, timeout=20)
    try:
        h = {"Host": f"{host}:{port}", "User-Agent": "TiviMate/4.7", **(headers or {})}
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return ns(status=r.status, headers={k.lower(): v for k, v in r.getheaders()}, body=data)
    finally:
        c.close()


def q(**kw):
    return urllib.parse.urlencode(kw)


def api(p, s, line=None, host="localhost", password=None, headers=None, **args):
    creds = {}
    if line is not None:
        creds = {"username": line.username, "password": line.password if password is None else password}
    return request(p, f"/t/{s.slug}/player_api.php?{q(**creds, **args)}", host=host, headers=headers)


def api_json(p, s, line, **kw):
    r = api(p, s, line, **kw)
    assert r.status == 200, (r.status, r.body)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return json.loads(r.body)


def playlist(p, s, line, host="localhost", password=None, **args):
    creds = {"username": line.username, "password": line.password if password is None else password}
    return request(p, f"/t/{s.slug}/get.php?{q(**creds, **args)}", host=host)


_ips = iter(range(1, 1 << 20))


def ip():
    n = next(_ips)
    return f"10.77.{(n >> 8) & 255}.{n & 255}"


# ---------------------------------------------------------------------------
# The platform and a shop
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(linesd_env=LINESD_ENV, edged=True, edged_env=EDGED_ENV)
    yield s
    codes = s.close()
    assert all(c == 0 for c in codes.values()), codes


def wait_brand(p, slug, timeout=10.0):
    """Until edged knows the tenant's slug (its brand table is re-read)."""
    fdedge.wait_for(lambda: request(p, f"/t/{slug}/player_api.php").status == 200, timeout,
                    f"edged serving /t/{slug}/")


def new_line(s, package=None, **kw):
    return s.r.lines.CreateLine(reseller_id=s.r.id, package_id=(package or s.pkg).id, idempotency_key=ikey(),
                                **kw).line


def stream(t, name, category="", number=0, logo="", epg="", bouquets=()):
    return t.lines.CreateStream(name=name, kind=L.STREAM_KIND_LIVE, category=category, number=number,
                                logo_url=logo, epg_channel=epg, bouquet_ids=list(bouquets),
                                idempotency_key=ikey()).stream


@pytest.fixture(scope="module")
def shop(p):
    """A tenant whose package has two bouquets: b1 = [gamma, alpha, delta
    (disabled)], b2 = [beta, alpha, epsilon]; so the line's channels are
    gamma, alpha, beta, epsilon. A second package plays TS only."""
    t = p.tenant()
    r = p.reseller(t, credits=1_000_000)
    alpha = stream(t, "Alpha One", "News", 101, "https://logos.test/alpha.png", "alpha.one")
    beta = stream(t, 'Beta "Quoted", Two', "Sports & More", 0, 'https://logos.test/b"eta.png', "")
    gamma = stream(t, "Gamma", "News", 7, "", "gamma.tv")
    delta = stream(t, "Delta", "Movies", 3, "", "delta.tv")
    epsilon = stream(t, "Épsilon ✓", "", 0, "https://logos.test/e.png", "eps.tv")
    t.lines.UpdateStream(stream_id=delta.id, disabled=C.OptionalBool(value=True))
    b1 = t.lines.CreateBouquet(name=uniq("b1"), stream_ids=[gamma.id, alpha.id, delta.id],
                               idempotency_key=ikey()).bouquet
    b2 = t.lines.CreateBouquet(name=uniq("b2"), stream_ids=[beta.id, alpha.id, epsilon.id],
                               idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name=uniq("pkg"), duration_days=30, credit_cost=1, max_connections=2,
                                bouquet_ids=[b1.id, b2.id], idempotency_key=ikey()).package
    pkg_ts = t.lines.CreatePackage(name=uniq("ts"), duration_days=30, credit_cost=1, max_connections=1,
                                   bouquet_ids=[b1.id, b2.id], allowed_output_formats=[C.OUTPUT_FORMAT_TS],
                                   idempotency_key=ikey()).package
    s = ns(t=t, r=r, slug=t.slug, tenant=t.tenant, pkg=pkg, pkg_ts=pkg_ts, b1=b1, b2=b2,
           alpha=alpha, beta=beta, gamma=gamma, delta=delta, epsilon=epsilon,
           channels=[gamma, alpha, beta, epsilon])
    wait_brand(p, t.slug)
    return s


def epg_id(st):
    return st.epg_channel or str(st.id)


# ---------------------------------------------------------------------------
# player_api.php: the login payload
# ---------------------------------------------------------------------------

def test_login_payload_fields_and_types(p, shop):
    line = new_line(shop)
    before = int(time.time())
    j = api_json(p, shop, line)
    after = int(time.time())
    assert list(j) == ["user_info", "server_info"]
    u, s = j["user_info"], j["server_info"]
    assert list(u) == USER_INFO_KEYS
    assert u["username"] == line.username and u["password"] == line.password
    assert u["message"] == ""
    assert u["auth"] == 1 and type(u["auth"]) is int
    assert u["status"] == "Active"
    assert u["exp_date"] == str(line.expires_at)
    assert u["is_trial"] == "0"
    assert u["active_cons"] == "0"
    assert u["created_at"] == str(line.created_at)
    assert u["max_connections"] == "2"
    assert u["allowed_output_formats"] == ["m3u8", "ts", "rtmp"]    # the package lists none: all
    for k in ("exp_date", "is_trial", "active_cons", "created_at", "max_connections"):
        assert type(u[k]) is str and u[k].isdigit(), (k, u[k])
    assert list(s) == SERVER_INFO_KEYS
    assert s["url"] == "localhost"
    assert s["port"] == str(p.edged.port)
    assert s["https_port"] == "443"
    assert s["server_protocol"] == "http"
    assert type(s["rtmp_port"]) is str and s["rtmp_port"].isdigit()
    assert s["timezone"] == "UTC"
    assert type(s["timestamp_now"]) is int and before - 1 <= s["timestamp_now"] <= after + 1
    assert s["time_now"] == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["timestamp_now"]))


def test_server_info_follows_the_host_and_scheme(p, shop):
    line = new_line(shop)
    j = api_json(p, shop, line, host="tv-a.test")
    assert (j["server_info"]["url"], j["server_info"]["port"]) == ("tv-a.test", str(p.edged.port))
    # Behind a TLS proxy (trusted here) on 443: what the player used.
    r = request(p, f"/t/{shop.slug}/player_api.php?{q(username=line.username, password=line.password)}",
                host="tv-b.test", port=443, headers={"X-Forwarded-Proto": "https"})
    s = json.loads(r.body)["server_info"]
    assert (s["url"], s["port"], s["https_port"], s["server_protocol"]) == ("tv-b.test", "443", "443", "https")


def test_formats_of_the_package(p, shop):
    line = new_line(shop, package=shop.pkg_ts)
    assert api_json(p, shop, line)["user_info"]["allowed_output_formats"] == ["ts"]


def test_bad_logins_are_one_answer(p, shop):
    line = new_line(shop)
    answers = [
        api(p, shop, line, password="wrong-password"),
        api(p, shop, ns(username="nobody-" + uuid.uuid4().hex[:8], password=line.password)),
        api(p, shop, ns(username=line.username, password="")),
        request(p, f"/t/{shop.slug}/player_api.php"),
        request(p, f"/t/{shop.slug}/player_api.php?{q(username=line.username)}"),
        api(p, shop, line, password="x" * 65),
        api(p, shop, line, password="wrong-password", action="get_live_streams"),
    ]
    for r in answers:
        assert (r.status, r.body) == (200, BAD_LOGIN)
    # Byte for byte, headers included (but the date).
    a, b = answers[0], answers[1]
    strip = lambda h: {k: v for k, v in h.items() if k != "date"}  # noqa: E731
    assert strip(a.headers) == strip(b.headers)


@pytest.mark.parametrize("status,shown", [(L.LINE_STATUS_BANNED, "Banned"), (L.LINE_STATUS_DISABLED, "Disabled")])
def test_banned_and_disabled(p, shop, status, shown):
    line = new_line(shop)
    shop.r.lines.SetLineStatus(line_id=line.id, status=status, reason="test")
    u = api_json(p, shop, line)["user_info"]
    assert (u["auth"], u["status"], u["username"]) == (1, shown, line.username)
    assert u["message"] != ""
    # Lists are empty for it; the wrong password is still the one answer.
    assert api(p, shop, line, action="get_live_streams").body == b"[]"
    assert api(p, shop, line, password="wrong-password").body == BAD_LOGIN
    r = playlist(p, shop, line)
    assert r.status == 403 and shown.lower() in r.body.decode()


def test_expired(p, shop):
    line = new_line(shop)
    p.sql(f"UPDATE frontdesk.lines SET expires_at = now() - interval '1 hour' WHERE id = {line.id}")
    u = api_json(p, shop, line)["user_info"]
    assert (u["auth"], u["status"]) == (1, "Expired")
    assert int(u["exp_date"]) < time.time()
    assert playlist(p, shop, line).status == 403


def test_suspended_reseller_reads_disabled(p):
    t = p.tenant()
    r = p.reseller(t, credits=1000)
    cat = p.catalog(t)
    line = r.lines.CreateLine(reseller_id=r.id, package_id=cat.package.id, idempotency_key=ikey()).line
    s = ns(slug=t.slug)
    wait_brand(p, t.slug)
    assert api_json(p, s, line)["user_info"]["status"] == "Active"
    t.auth.UpdateReseller(reseller_id=r.id, status=A.RESELLER_STATUS_SUSPENDED)
    fdedge.wait_for(lambda: api_json(p, s, line)["user_info"]["status"] == "Disabled", 10, "suspension seen")
    u = api_json(p, s, line)["user_info"]
    assert u["auth"] == 1 and u["message"] == "service suspended"


def test_post_form_login(p, shop):
    line = new_line(shop)
    url = f"{p.edge_url}/t/{shop.slug}/player_api.php"
    data = q(username=line.username, password=line.password).encode()
    req = urllib.request.Request(url, data=data, headers={"Host": f"localhost:{p.edged.port}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        j = json.loads(r.read())
    assert j["user_info"]["auth"] == 1 and j["user_info"]["username"] == line.username
    # An action in the form too.
    data = q(username=line.username, password=line.password, action="get_live_categories").encode()
    r = request(p, f"/t/{shop.slug}/player_api.php", method="POST", body=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert [c["category_name"] for c in json.loads(r.body)] == ["News", "Sports & More"]
    data = q(username=line.username, password="wrong-password").encode()
    r = request(p, f"/t/{shop.slug}/player_api.php", method="POST", body=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.body == BAD_LOGIN


def test_unknown_actions_answer_the_login_payload(p, shop):
    line = new_line(shop)
    plain = api_json(p, shop, line)
    for action in ("get_profile", "get_server_info", "", "no_such_action"):
        j = api_json(p, shop, line, action=action)
        for k in ("timestamp_now", "time_now"):
            j["server_info"].pop(k), plain["server_info"].pop(k, None)
        assert j == plain, action


# ---------------------------------------------------------------------------
# player_api.php: live categories and streams, and the empty shapes
# ---------------------------------------------------------------------------

def categories(p, s, line):
    return api_json(p, s, line, action="get_live_categories")


def test_live_categories(p, shop):
    line = new_line(shop)
    cats = categories(p, shop, line)
    assert [c["category_name"] for c in cats] == ["News", "Sports & More"]   # Movies: only a disabled stream
    for c in cats:
        assert list(c) == ["category_id", "category_name", "parent_id"]
        assert type(c["category_id"]) is str and c["category_id"].isdigit() and c["parent_id"] == 0
    assert categories(p, shop, line) == cats


def test_category_ids_stay_after_catalog_changes(p):
    t = p.tenant()
    r = p.reseller(t, credits=1000)
    a = stream(t, "A", "Kids")
    b = stream(t, "B", "Docs")
    bq = t.lines.CreateBouquet(name=uniq("bq"), stream_ids=[a.id, b.id], idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name=uniq("p"), duration_days=1, max_connections=1, bouquet_ids=[bq.id],
                                idempotency_key=ikey()).package
    line = r.lines.CreateLine(reseller_id=r.id, package_id=pkg.id, idempotency_key=ikey()).line
    s = ns(slug=t.slug)
    wait_brand(p, t.slug)
    before = {c["category_name"]: c["category_id"] for c in categories(p, s, line)}
    assert list(before) == ["Kids", "Docs"]
    # New streams in front, one of a new category: the old ids stay, the new one is seen within a second.
    stream(t, "Z", "Weather", bouquets=[bq.id])
    c0 = stream(t, "C", "Docs", bouquets=[bq.id])
    t.lines.UpdateBouquet(bouquet_id=bq.id, stream_ids=C.Int64List(values=[c0.id, a.id, b.id]))
    start = time.monotonic()
    fdedge.wait_for(lambda: [c["category_name"] for c in categories(p, s, line)] == ["Docs", "Kids"], 5,
                    "the catalog change seen")
    assert time.monotonic() - start < 1.5
    after = {c["category_name"]: c["category_id"] for c in categories(p, s, line)}
    assert after["Kids"] == before["Kids"] and after["Docs"] == before["Docs"]


def test_live_streams(p, shop):
    line = new_line(shop)
    items = api_json(p, shop, line, action="get_live_streams")
    assert [i["stream_id"] for i in items] == [st.id for st in shop.channels]    # bouquet order, delta out
    cats = {c["category_name"]: c["category_id"] for c in categories(p, shop, line)}
    for item, st in zip(items, shop.channels):
        assert list(item) == STREAM_KEYS
        assert item["num"] == (st.number or shop.channels.index(st) + 1) and type(item["num"]) is int
        assert item["name"] == st.name
        assert item["stream_type"] == "live"
        assert type(item["stream_id"]) is int
        assert item["stream_icon"] == st.logo_url
        assert item["epg_channel_id"] == epg_id(st)
        assert item["added"] == str(st.created_at)
        if st.category:
            assert item["category_id"] == cats[st.category]
            assert item["category_ids"] == [int(cats[st.category])]
        else:
            assert item["category_id"] == "0" and item["category_ids"] == []
        assert (item["custom_sid"], item["tv_archive"], item["direct_source"], item["tv_archive_duration"],
                item["thumbnail"]) == ("", 0, "", 0, "")
    news = api_json(p, shop, line, action="get_live_streams", category_id=cats["News"])
    assert [i["stream_id"] for i in news] == [shop.gamma.id, shop.alpha.id]
    assert api_json(p, shop, line, action="get_live_streams", category_id="999999999") == []
    assert api_json(p, shop, line, action="get_live_streams", category_id="not-a-number") == []
    assert api_json(p, shop, line, action="get_live_streams", category_id="") == items


def test_empty_shapes(p, shop):
    line = new_line(shop)
    for action in ("get_vod_categories", "get_vod_streams", "get_series_categories", "get_series"):
        assert api(p, shop, line, action=action).body == b"[]", action
    assert api_json(p, shop, line, action="get_vod_info", vod_id="1") == {"info": []}
    r = api(p, shop, line, action="get_series_info", series_id="1")
    assert json.loads(r.body) == {"seasons": [], "info": {}, "episodes": {}}
    assert b'"episodes":{}' in r.body
    assert api_json(p, shop, line, action="get_short_epg", stream_id=str(shop.alpha.id)) == {"epg_listings": []}
    assert api_json(p, shop, line, action="get_simple_data_table", stream_id="1") == {"epg_listings": []}


def test_rate_limit(p, shop):
    line = new_line(shop)
    client = {"X-Forwarded-For": ip()}
    answers = [api(p, shop, line, password="wrong-pass-%d" % i, headers=client) for i in range(8)]
    assert answers[0].body == BAD_LOGIN
    limited = [r for r in answers if r.status == 429]
    assert limited, [r.status for r in answers]
    assert int(limited[0].headers["retry-after"]) > 0
    # Even the right password waits now, from that client; another client logs in.
    r = api(p, shop, line, headers=client)
    assert r.status == 429 and "retry-after" in r.headers
    assert api_json(p, shop, line, headers={"X-Forwarded-For": ip()})["user_info"]["auth"] == 1


# ---------------------------------------------------------------------------
# get.php
# ---------------------------------------------------------------------------

def enc(s):
    return urllib.parse.quote(s, safe="-._~")


def expected_m3u(p, s, line, host="localhost", plus=True, ext="ts", channels=None, password=None):
    pw = line.password if password is None else password
    base = f"http://{host}:{p.edged.port}/t/{s.slug}"
    guide = f"{base}/xmltv.php?username={enc(line.username)}&password={enc(pw)}"
    out = f'#EXTM3U x-tvg-url="{guide}" url-tvg="{guide}"\r\n'
    for st in channels or s.channels:
        if plus:
            out += (f'#EXTINF:-1 tvg-id="{epg_id(st)}" tvg-name="{st.name.replace(chr(34), chr(39))}"'
                    f' tvg-logo="{st.logo_url.replace(chr(34), "%22")}"'
                    f' group-title="{st.category.replace(chr(34), chr(39))}",{st.name}\r\n')
        else:
            out += f"#EXTINF:-1,{st.name}\r\n"
        out += f"{base}/live/{enc(line.username)}/{enc(pw)}/{st.id}.{ext}\r\n"
    return out.encode()


def test_m3u_plus_exact_bytes(p, shop):
    line = new_line(shop)
    for args in ({}, {"type": "m3u_plus"}, {"type": "m3u_plus", "output": "ts"}):
        r = playlist(p, shop, line, **args)
        assert r.status == 200, (r.status, r.body)
        assert r.body == expected_m3u(p, shop, line), args
        assert r.headers["content-type"] == "audio/x-mpegurl"
        assert r.headers["cache-control"] == "no-store"
    assert r.body.startswith(b"#EXTM3U ")          # no byte-order mark
    assert b"\n" not in r.body.replace(b"\r\n", b"")
    # The quoted name stays one attribute: a quote-aware parse finds every attribute.
    extinf = [ln for ln in r.body.decode().split("\r\n") if ln.startswith("#EXTINF")]
    attrs = re.findall(r'([a-z-]+)="([^"]*)"', extinf[2])
    assert [a for a, _ in attrs] == ["tvg-id", "tvg-name", "tvg-logo", "group-title"]
    assert dict(attrs)["tvg-name"] == "Beta 'Quoted', Two"
    assert extinf[2].endswith(',Beta "Quoted", Two')


def test_m3u_exact_bytes_and_outputs(p, shop):
    line = new_line(shop)
    r = playlist(p, shop, line, type="m3u")
    assert r.body == expected_m3u(p, shop, line, plus=False)
    for output, ext in (("m3u8", "m3u8"), ("hls", "m3u8"), ("ts", "ts")):
        r = playlist(p, shop, line, type="m3u", output=output)
        assert r.body == expected_m3u(p, shop, line, plus=False, ext=ext), output
    r = playlist(p, shop, line, type="m3u_plus", output="hls")
    assert r.body == expected_m3u(p, shop, line, ext="m3u8")


def test_unknown_type_and_output(p, shop):
    line = new_line(shop)
    r = playlist(p, shop, line, type="enigma16")
    assert r.status == 400 and b"enigma16" in r.body
    r = playlist(p, shop, line, output="rtmp")
    assert r.status == 400 and b"rtmp" in r.body


def test_formats_not_allowed(p, shop):
    line = new_line(shop, package=shop.pkg_ts)
    assert playlist(p, shop, line).status == 200
    for output in ("m3u8", "hls"):
        r = playlist(p, shop, line, output=output)
        assert r.status == 403 and b"not allowed" in r.body, output


def test_bad_credentials_refused_alike(p, shop):
    line = new_line(shop)
    a = playlist(p, shop, line, password="wrong-password")
    b = playlist(p, shop, ns(username="nobody-" + uuid.uuid4().hex[:6], password=line.password))
    c = request(p, f"/t/{shop.slug}/get.php?type=m3u_plus")
    assert a.status == b.status == c.status == 403
    assert a.body == b.body == c.body
    x = request(p, f"/t/{shop.slug}/xmltv.php?{q(username=line.username, password='wrong-password')}")
    assert (x.status, x.body) == (403, a.body)


def test_urls_follow_the_host_the_player_used(p, shop):
    """Two host names of this edge, two URL sets, also when both are cached
    (a cache keyed without the host would hand the first one's URLs out)."""
    line = new_line(shop)
    for _ in range(2):
        a = playlist(p, shop, line, host="tv-a.test")
        b = playlist(p, shop, line, host="tv-b.test")
        assert a.body == expected_m3u(p, shop, line, host="tv-a.test")
        assert b.body == expected_m3u(p, shop, line, host="tv-b.test")
    # curl, with the host it is told to use.
    r = fdedge.curl(f"{p.edge_url}/t/{shop.slug}/get.php?{q(username=line.username, password=line.password)}",
                    "-H", f"Host: localhost:{p.edged.port}")
    assert r.status == 200 and r.body == expected_m3u(p, shop, line)


def test_credentials_percent_encoded(p, shop):
    user = "tv@home." + uuid.uuid4().hex[:6]
    line = shop.r.lines.CreateLine(reseller_id=shop.r.id, package_id=shop.pkg.id, username=user,
                                   password="pa~ss.w-rd_1", idempotency_key=ikey()).line
    r = playlist(p, shop, line)
    assert r.status == 200
    assert r.body == expected_m3u(p, shop, line)
    assert f"/live/tv%40home.{user[8:]}/pa~ss.w-rd_1/".encode() in r.body
    assert b"username=tv%40home." in r.body


# ---------------------------------------------------------------------------
# xmltv.php
# ---------------------------------------------------------------------------

def test_xmltv(p, shop):
    line = new_line(shop)
    r = request(p, f"/t/{shop.slug}/xmltv.php?{q(username=line.username, password=line.password)}")
    assert r.status == 200
    assert r.headers["content-type"] == "application/xml; charset=utf-8"
    assert r.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    tv = ET.fromstring(r.body)
    assert tv.tag == "tv" and tv.get("generator-info-name") == "frontdesk"
    chans = tv.findall("channel")
    assert [c.get("id") for c in chans] == [epg_id(st) for st in shop.channels]
    for c, st in zip(chans, shop.channels):
        assert [d.text for d in c.findall("display-name")] == [st.name]
        icons = [i.get("src") for i in c.findall("icon")]
        assert icons == ([st.logo_url] if st.logo_url else [])
    assert tv.findall("programme") == []
    # The same string ties the three together: tvg-id, <channel id>, epg_channel_id.
    items = api_json(p, shop, line, action="get_live_streams")
    assert [i["epg_channel_id"] for i in items] == [c.get("id") for c in chans]
    assert line.password.encode() not in r.body


# ---------------------------------------------------------------------------
# 5,000 streams: timed, cached, kept true
# ---------------------------------------------------------------------------

class Gate:
    """A psql session holding a lock in an open transaction."""

    def __init__(self, p, sql):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", fdtest.PGHOST, "-p", str(fdtest.PGPORT),
             "-U", "postgres", "-d", p.db.name], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN;\n{sql};\nSELECT pg_sleep(0);\n")
        self.proc.stdin.flush()
        held = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'stream_categories' AND l.mode = 'AccessExclusiveLock' AND l.granted")
        fdedge.wait_for(lambda: p.sql(held) == "1", 5, "the lock held")

    def release(self):
        self.proc.stdin.write("COMMIT;\n")
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()


def test_5000_streams(p):
    t = p.tenant()
    r = p.reseller(t, credits=1000)
    first = int(p.sql("SELECT coalesce(max(id), 0) + 1 FROM frontdesk.streams WHERE tenant_id = "
                      f"{t.tenant}"))
    p.sql(f"""INSERT INTO frontdesk.streams (tenant_id, id, name, kind, category, number, logo_url, epg_channel)
              SELECT {t.tenant}, {first} - 1 + g, 'Channel ' || g, 1, 'Category ' || (g % 40), g,
                     'https://logos.example.net/channels/' || g || '.png', 'channel' || g || '.example'
                FROM generate_series(1, 5000) g""")
    ids = list(range(first, first + 5000))
    bq = t.lines.CreateBouquet(name=uniq("big"), stream_ids=ids, idempotency_key=ikey()).bouquet
    pkg = t.lines.CreatePackage(name=uniq("big"), duration_days=30, max_connections=1, bouquet_ids=[bq.id],
                                idempotency_key=ikey()).package
    line = r.lines.CreateLine(reseller_id=r.id, package_id=pkg.id, idempotency_key=ikey()).line
    s = ns(slug=t.slug)
    wait_brand(p, t.slug)

    def get():
        start = time.perf_counter()
        res = playlist(p, s, line)
        took = time.perf_counter() - start
        assert res.status == 200, (res.status, res.body[:200])
        return res, took

    res, cold = get()
    lines = res.body.split(b"\r\n")
    assert len(lines) == 1 + 2 * 5000 + 1 and lines[-1] == b""
    assert lines[2] == f"http://localhost:{p.edged.port}/t/{t.slug}/live/{line.username}/{line.password}/{first}.ts".encode()
    times = [get()[1] for _ in range(20)]
    warm = statistics.median(times)
    print(f"\nget.php, 5,000 channels ({len(res.body)} bytes): first {cold * 1000:.1f} ms,"
          f" then median {warm * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
    assert warm < cold and warm < 0.25, (cold, times)

    # From the cache: with linesd's channel read blocked (the category table
    # locked), the playlist is still answered; the login is not blocked.
    gate = Gate(p, "LOCK TABLE frontdesk.stream_categories IN ACCESS EXCLUSIVE MODE")
    try:
        res2, took = get()
        assert res2.body == res.body and took < 1.0
    finally:
        gate.release()

    # A change of the catalog is seen within a second (the event drops the cache).
    p.sql(f"UPDATE frontdesk.streams SET name = 'Renamed' WHERE tenant_id = {t.tenant} AND id = {first}")
    start = time.monotonic()
    fdedge.wait_for(lambda: b",Renamed\r\n" in playlist(p, s, line).body, 5, "the rename seen")
    assert time.monotonic() - start < 1.0


def test_no_password_in_the_log(p, shop):
    line = new_line(shop)
    api(p, shop, line)
    playlist(p, shop, line)
    request(p, f"/t/{shop.slug}/xmltv.php?{q(username=line.username, password=line.password)}")
    api(p, shop, line, password="wrong-secret-" + line.password)
    time.sleep(0.2)
    log = p.edged.output()
    assert "player_api.php" in log and "get.php" in log
    assert line.password not in log


def test_linesd_unreachable(p, shop):
    """linesd down: 503 with Retry-After (never a wrong-password answer);
    back up: served again, and a catalog change made meanwhile is seen."""
    line = new_line(shop)
    assert playlist(p, shop, line).status == 200
    p.linesd[0].stop()
    try:
        for r in (api(p, shop, line), playlist(p, shop, line),
                  request(p, f"/t/{shop.slug}/xmltv.php?{q(username=line.username, password=line.password)}")):
            assert r.status == 503 and int(r.headers["retry-after"]) > 0, (r.status, r.body)
        # Its announcement is lost: nobody listens.
        p.sql(f"UPDATE frontdesk.streams SET name = 'Gamma Again' WHERE tenant_id = {shop.tenant}"
              f" AND id = {shop.gamma.id}")
        shop.gamma.name = "Gamma Again"
    finally:
        p.replace_linesd(0)
    fdedge.wait_for(lambda: playlist(p, shop, line).body == expected_m3u(p, shop, line), 10,
                    "the playlist served again, with the change")


def test_without_cache(p, shop):
    """FRONTDESK_EDGED_PLAYLIST_CACHE_MB=0: the same answers, every time read."""
    line = new_line(shop)
    want = [playlist(p, shop, line, host="tv-a.test").body, categories(p, shop, line),
            api_json(p, shop, line, action="get_live_streams")]
    p.replace_edged({"FRONTDESK_EDGED_PLAYLIST_CACHE_MB": "0"})
    wait_brand(p, shop.slug)
    for _ in range(2):
        got = [playlist(p, shop, line, host="tv-a.test").body, categories(p, shop, line),
               api_json(p, shop, line, action="get_live_streams")]
        assert got == want
    assert want[0] == expected_m3u(p, shop, line, host="tv-a.test")
