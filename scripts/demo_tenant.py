#!/usr/bin/python3
"""demo_tenant.py - what a portal does on first contact, used by up.sh: log in
as the platform admin and create the demo tenant (idempotent: a rerun finds
it). Prints how its admin logs in.
   demo_tenant.py AUTHD_TARGET PLATFORM_PASSWORD DEMO_ADMIN_PASSWORD"""
import os
import sys

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
os.environ.setdefault("FD_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fdapi  # noqa: E402

target, platform_pw, demo_pw = sys.argv[1:4]
with grpc.insecure_channel(target) as ch:
    grpc.channel_ready_future(ch).result(timeout=15)
    auth = fdapi.Auth(ch)
    login = auth.Login(tenant_slug="platform", username="admin", password=platform_pw)
    admin = auth.with_token(login.access_token)
    try:
        r = admin.CreateTenant(slug="demo", name="Demo operator", admin_username="demo-admin",
                               admin_password=demo_pw, admin_display_name="Demo admin",
                               idempotency_key="up.sh-demo-tenant")
        print(f"demo tenant {r.tenant.id} (slug demo) created")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        print("demo tenant (slug demo) already exists")
    me = fdapi.Auth(ch).Login(tenant_slug="demo", username="demo-admin", password=demo_pw)
    print(f"demo admin logs in: tenant_slug=demo username=demo-admin (role {me.caller.role}, "
          f"{len(me.caller.scopes)} scopes)")
