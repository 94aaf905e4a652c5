"""billing_setup.py - the gRPC side of bench/billing.sh's set-up (its SQL side
is in billing.sh). Each command prints shell assignments or writes files:

  wait TARGET                       until TARGET answers Health/Check SERVING
  tenant AUTHD ADMIN_PW             a tenant made by the platform admin:
                                    tenant=<id> root=<its admin's account id>
  token AUTHD SECRET [BILLINGD TENANT]
                                    a fresh linesd service token for billingd;
                                    with BILLINGD, also checks that billingd
                                    takes it (a Charge without a key answers
                                    INVALID_ARGUMENT, after the token is
                                    verified: its verifier has the key loaded)
  payloads DIR TENANT HOT FIRST N TAG KEY
                                    DIR/hot.hex (one ChargeRequest for reseller
                                    HOT) and DIR/spread.hex (one for each of the
                                    N resellers FIRST..FIRST+N-1): amount 1,
                                    LINE_CREATED, line 1, note "bench",
                                    idempotency_key TAG+KEY,
                                    serialized, in hex, one a line (bench_load
                                    --payload-file; TAG is replaced per run and
                                    KEY per call by bench_load --vary-key)
  pgbench FILE [nopipeline]         the pgbench script of one Charge: what
                                    billingd sends (services/runtime/db.c) in one
                                    pipeline: BEGIN, the tenant, SQL_CHARGE as
                                    services/billingd/store.c spells it (read
                                    from there, with its 9 parameters as pgbench
                                    variables), COMMIT
"""
import importlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import grpc  # noqa: E402
import fdapi  # noqa: E402

billing_pb2 = importlib.import_module("frontdesk.v1.billing_pb2")


def wait(target, seconds=30):
    ch = grpc.insecure_channel(target)
    deadline = time.time() + seconds
    while True:
        try:
            if ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1) == b"\x08\x01":
                return ch
        except grpc.RpcError:
            pass
        if time.time() > deadline:
            sys.exit(f"billing_setup: {target} never became SERVING")
        time.sleep(0.1)


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# SQL_CHARGE's $1..$9 (billingd_charge's params[]) as pgbench variables: the
# tenant, the reseller, the amount, the reason, the line, the note, the actor
# service, the idempotency key ("Charge/svc:linesd/" + TAG + 16 digits, made
# unique per client and transaction by the script) and the request's hash.
CHARGE_VARS = [":t", ":r", ":amount", ":reason", ":line", ":note", ":actor", ":idem || :key", ":hash"]


def c_literals(text):
    """The concatenation of the C string literals in text."""
    out = []
    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
        out.append(re.sub(r"\\(.)", r"\1", lit))
    return "".join(out)


def sql_charge():
    """SQL_CHARGE as billingd sends it, from services/billingd/store.c."""
    src = open(os.path.join(ROOT, "services", "billingd", "store.c")).read()
    m = re.search(r"#define ENTRY_COLS\(REFUNDED\)((?:[^\n]*\\\n)*[^\n]*)", src)
    assert m and m.group(1).rstrip().endswith("REFUNDED"), "store.c: ENTRY_COLS changed shape"
    entry_cols = c_literals(m.group(1))
    m = re.search(r"static const fd_sql_t SQL_CHARGE = \{(.*?)\n\};", src, re.S)
    assert m, "store.c: SQL_CHARGE not found"
    body = m.group(1)
    body = body.replace('ENTRY_COLS("0")', '"' + entry_cols + '0"')
    name, rest = body.split(",", 1)
    assert c_literals(name) == "billingd_charge", "store.c: SQL_CHARGE changed shape"
    nparams = int(rest.rstrip().rstrip(",").rsplit(",", 1)[1])
    sql = c_literals(rest)
    assert nparams == len(CHARGE_VARS) and f"${nparams}" in sql and f"${nparams + 1}" not in sql, \
        "store.c: SQL_CHARGE's parameters changed"
    # $9 before $1, so that $1 does not eat the 1 of another.
    for i in range(nparams, 0, -1):
        sql = sql.replace(f"${i}", CHARGE_VARS[i - 1])
    return sql


def main(cmd, *args):
    if cmd == "wait":
        wait(args[0])
    elif cmd == "tenant":
        auth = fdapi.Auth(wait(args[0]), timeout=30)
        admin = auth.Login(tenant_slug="platform", username="admin", password=args[1]).access_token
        r = auth.with_token(admin).CreateTenant(slug="bench-billing", name="Bench billing",
                                                admin_username="boss",
                                                admin_password="bench-boss-password-1")
        assert r.tenant.id > 0 and r.admin.id > 0 and r.admin.parent_id == 0
        print(f"tenant={r.tenant.id} root={r.admin.id}")
    elif cmd == "token":
        auth = fdapi.Auth(grpc.insecure_channel(args[0]), timeout=30)
        r = auth.IssueServiceToken(service_name="linesd", secret=args[1], audience="billingd")
        if len(args) > 2:
            bill = grpc.insecure_channel(args[2]).unary_unary("/frontdesk.v1.BillingService/Charge")
            req = billing_pb2.ChargeRequest(tenant_id=int(args[3]), reseller_id=1, amount=1,
                                            reason=billing_pb2.CHARGE_REASON_LINE_CREATED)
            try:
                bill(req.SerializeToString(), metadata=fdapi.bearer(r.token), timeout=30)
                sys.exit("billing_setup: a Charge without an idempotency key was taken")
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    sys.exit(f"billing_setup: billingd refused the token: {e.code().name}: {e.details()}")
        print(f"token='{r.token}'")
    elif cmd == "payloads":
        out, tenant, hot, first, n, tag, key = args
        tenant, hot, first, n = int(tenant), int(hot), int(first), int(n)

        def charge(reseller):
            m = billing_pb2.ChargeRequest(
                tenant_id=tenant, reseller_id=reseller, amount=1,
                reason=billing_pb2.CHARGE_REASON_LINE_CREATED, line_id=1, note="bench",
                idempotency_key=tag + key)
            return m.SerializeToString().hex() + "\n"
        with open(os.path.join(out, "hot.hex"), "w") as f:
            f.write(charge(hot))
        with open(os.path.join(out, "spread.hex"), "w") as f:
            f.writelines(charge(first + i) for i in range(n))
    elif cmd == "pgbench":
        pipeline = "nopipeline" not in args[1:]
        timeout = "timeout" in args[1:]
        with open(args[0], "w") as f:
            f.write("-- written by bench/billing_setup.py: one Charge as billingd runs it\n"
                    "-- a per-client counter: (client_id, n) is unique in a run, TAG per run\n"
                    "\\set n :n + 1\n"
                    "\\set key 1000000000000000 + :client_id * 10000000000 + :n\n"
                    "\\set r :r0 + random(0, :span - 1)\n")
            f.write("\\startpipeline\n" if pipeline else "")
            f.write("BEGIN ISOLATION LEVEL READ COMMITTED;\n"
                    + ("SELECT set_config('frontdesk.tenant_id', :t, true), set_config('statement_timeout', :st, true);\n"
                       if timeout else "SELECT set_config('frontdesk.tenant_id', :t, true);\n") +
                    f"{sql_charge()};\n"
                    "COMMIT;\n")
            f.write("\\endpipeline\n" if pipeline else "")
    else:
        sys.exit(f"billing_setup: unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
