#!/usr/bin/python3
"""demo_tenant.py - what a portal does on first contact, used by up.sh: wait
until every service answers health, log in as the platform admin and create
the demo tenant. A rerun skips what exists and says what it found (a password
changed since the first start is reported, never an error). Prints how each
admin logs in.
   demo_tenant.py AUTHD_TARGET [OTHER_SERVICE_TARGET...]
Passwords come from the environment, as up.sh exports them from secrets.env:
FRONTDESK_BOOTSTRAP_PASSWORD (the platform admin's, FRONTDESK_BOOTSTRAP_USERNAME
or "admin") and DEMO_ADMIN_PASSWORD. Exit 1 when a service never answers or an
answer is not one of those expected."""
import json
import os
import sys
import time
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
os.environ.setdefault("FD_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fdapi  # noqa: E402

SECRETS = "secrets.env"
WAIT_S = 30


def role_name(role):
    """ROLE_TENANT_ADMIN -> tenant_admin (the enum's name, not its number)."""
    try:
        return fdapi.common_pb2.Role.Name(role)[len("ROLE_"):].lower()
    except ValueError:
        return f"unknown role {role}"


def tenant_status(t):
    """TENANT_STATUS_SUSPENDED -> suspended."""
    return fdapi.auth_pb2.TenantStatus.Name(t.status)[len("TENANT_STATUS_"):].lower()


def wait_serving(target, deadline):
    """Waits until grpc.health.v1.Health/Check answers SERVING (field 1 = 1)."""
    last = "no answer"
    with grpc.insecure_channel(target) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check")
        while time.time() < deadline:
            try:
                if check(b"", timeout=1, wait_for_ready=True) == b"\x08\x01":
                    return
                last = "NOT_SERVING"
            except grpc.RpcError as e:
                last = e.code().name
            time.sleep(0.1)
    sys.exit(f"demo_tenant: {target} does not answer health after {WAIT_S} s ({last})")


def login(auth, slug, username, password, who, var):
    """Logs in; None (and says why) when the password from secrets.env is no
    longer the account's or the account is missing or locked for now."""
    if not password:
        print(f"{who}: {var} is not in {SECRETS}: not checked")
        return None
    try:
        return auth.Login(tenant_slug=slug, username=username, password=password)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            print(f"{who}: the password in {SECRETS} ({var}) does not log in: changed since "
                  f"(or the account is gone); not printed")
            return None
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            print(f"{who}: logins refused for now (too many failures): {e.details()}")
            return None
        raise


def logs_in(who, slug, username, var, r):
    print(f"{who} logs in: tenant_slug={slug} username={username}, password {var} in {SECRETS} "
          f"(role {role_name(r.caller.role)}, {len(r.caller.scopes)} scopes)")


def find_demo(admin):
    """The tenant whose slug is "demo", or None."""
    token = ""
    while True:
        page = admin.ListTenants(query="demo", page_size=100, page_token=token)
        for t in page.tenants:
            if t.slug == "demo":
                return t
        token = page.next_page_token
        if not token:
            return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    targets = sys.argv[1:]
    deadline = time.time() + WAIT_S
    for t in targets:
        wait_serving(t, deadline)
    platform_user = os.environ.get("FRONTDESK_BOOTSTRAP_USERNAME") or "admin"
    platform_pw = os.environ.get("FRONTDESK_BOOTSTRAP_PASSWORD", "")
    demo_pw = os.environ.get("DEMO_ADMIN_PASSWORD", "")
    with grpc.insecure_channel(targets[0]) as ch:
        auth = fdapi.Auth(ch)
        who = f"platform admin {platform_user}"
        r = login(auth, "platform", platform_user, platform_pw, who, "FRONTDESK_BOOTSTRAP_PASSWORD")
        demo = None
        if r:
            logs_in(who, "platform", platform_user, "FRONTDESK_BOOTSTRAP_PASSWORD", r)
            admin = auth.with_token(r.access_token)
            demo = find_demo(admin)
            if demo:
                print(f"demo tenant {demo.id} (slug demo) exists ({tenant_status(demo)}): not created again")
            elif not demo_pw:
                print(f"demo tenant: none, and DEMO_ADMIN_PASSWORD is not in {SECRETS}: not created")
            else:
                # No idempotency key: the lookup above is what makes a rerun
                # safe, and a key reused with another password (secrets.env
                # edited) would be refused instead of skipped.
                try:
                    c = admin.CreateTenant(slug="demo", name="Demo operator", admin_username="demo-admin",
                                           admin_password=demo_pw, admin_display_name="Demo admin")
                    demo = c.tenant
                    print(f"demo tenant {demo.id} (slug demo) created")
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                        raise
                    print("demo tenant (slug demo) exists (made at the same moment): not created again")
        else:
            print("demo tenant: not checked (that needs the platform admin's login)")
        who = "demo admin demo-admin"
        r = login(auth, "demo", "demo-admin", demo_pw, who, "DEMO_ADMIN_PASSWORD")
        if r:
            logs_in(who, "demo", "demo-admin", "DEMO_ADMIN_PASSWORD", r)
            if len(targets) >= 3:
                demo_catalog(targets, r)


# The demo's catalog and line. Fixed idempotency keys make a rerun answer
# what the first run made (the services keep keys for a day; past that, the
# lookups by name below find them).
DEMO_STREAMS = [("Demo News", "News", "demo.news"), ("Demo Sports", "Sports", "demo.sports"),
                ("Demo Movies", "Movies", "demo.movies")]
DEMO_LINE = "demo-viewer"


def wait_edge(login_url):
    """Until the HTTP edge serves the demo brand (it re-reads tenants every
    FRONTDESK_EDGED_HOSTS_REFRESH_MS, 2 s): the URLs printed next work when
    they are printed."""
    deadline = time.time() + WAIT_S
    last = "no answer"
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(login_url, timeout=2) as r:
                if json.load(r).get("user_info", {}).get("auth") == 1:
                    return
                last = "login refused"
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.2)
    print(f"the HTTP edge does not serve the demo brand after {WAIT_S} s ({last})")


def demo_catalog(targets, r):
    """Streams, a bouquet, a package and one line with its credits, made by
    the demo admin; prints what a player needs."""
    with grpc.insecure_channel(targets[1]) as bch, grpc.insecure_channel(targets[2]) as lch:
        lines = fdapi.Lines(lch).with_token(r.access_token)
        bill = fdapi.Billing(bch).with_token(r.access_token)
        L = fdapi.lines_pb2
        have = {s.name: s.id for s in lines.ListStreams(page_size=100).streams}
        ids = []
        for name, category, epg in DEMO_STREAMS:
            if name not in have:
                have[name] = lines.CreateStream(name=name, kind=L.STREAM_KIND_LIVE, category=category,
                                                epg_channel=epg, idempotency_key=f"demo-stream-{epg}").stream.id
            ids.append(have[name])
        bouquets = {b.name: b.id for b in lines.ListBouquets(page_size=100).bouquets}
        bouquet = bouquets.get("Demo bouquet") or lines.CreateBouquet(
            name="Demo bouquet", stream_ids=ids, idempotency_key="demo-bouquet").bouquet.id
        packages = {p.name: p.id for p in lines.ListPackages(page_size=100).packages}
        package = packages.get("Demo month") or lines.CreatePackage(
            name="Demo month", duration_days=30, credit_cost=1, max_connections=2, bouquet_ids=[bouquet],
            idempotency_key="demo-package").package.id
        found = [ln for ln in lines.ListLines(page_size=10, username_query=DEMO_LINE).lines if ln.username == DEMO_LINE]
        if found:
            line = lines.GetLine(line_id=found[0].id).line
            print(f"demo line {DEMO_LINE} exists: not created again")
        else:
            bill.MintCredits(reseller_id=r.caller.reseller_id, amount=10, idempotency_key="demo-credits")
            line = lines.CreateLine(reseller_id=r.caller.reseller_id, package_id=package, username=DEMO_LINE,
                                    idempotency_key="demo-line").line
            print(f"demo line {DEMO_LINE} created ({len(ids)} channels, 2 connections, 30 days)")
        edge = os.environ.get("FRONTDESK_EDGE_URL", "http://127.0.0.1:7180")
        base = f"{edge}/t/demo"
        wait_edge(f"{base}/player_api.php?username={line.username}&password={line.password}")
        print(f"  a player (Xtream codes login): server {base} username {line.username} password {line.password}")
        print(f"  an M3U playlist: {base}/get.php?username={line.username}&password={line.password}"
              f"&type=m3u_plus&output=m3u8")
        print("  (streams play once a streaming node is registered and heartbeating: see README, Streaming nodes)")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        sys.exit(f"demo_tenant: unexpected answer {e.code().name}: {e.details()}")
