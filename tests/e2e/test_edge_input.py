"""edged and bad input: what a scanner, a broken player or a slow client
sends. Each gets a clear 4xx (or the connection closed, for what never
finishes), nothing is written, and edged keeps serving everyone else. Raw
sockets where a client library would clean the request up first.

Also: the platform's own host without a brand, an unknown host, SIGTERM with
idle keep-alive connections open, and no line password in any log line.
"""
import resource
import signal
import socket
import time
import urllib.parse

import pytest

import fdstack
from fdstack import ikey

CONN_TIMEOUT = 2          # FRONTDESK_EDGED_CONNECTION_TIMEOUT for this module
IDLE_CONNECTIONS = 3000
EARLIER_LOGS = []         # the logs of an edged that was replaced
PASSWORD_MARK = "Pw-secret-" + ikey()[:12]   # a password that must never reach a log


@pytest.fixture(scope="module")
def p():
    s = fdstack.Stack(edged_env={"FRONTDESK_EDGED_CONNECTION_TIMEOUT": str(CONN_TIMEOUT),
                                 "FRONTDESK_EDGED_MAX_CONNECTIONS": str(IDLE_CONNECTIONS + 500)})
    yield s
    s.close()


def port_of(p):
    return int(p.edge_url.rsplit(":", 1)[1])


def raw(p, data, timeout=5.0):
    """Sends bytes as they are; returns (status, headers text, body) of the
    answer, or (0, '', '') when edged closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port_of(p)), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                head, sep, body = got.partition(b"\r\n\r\n")
                if sep:
                    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")]
                    if length and len(body) >= length[0]:
                        break
        except socket.timeout:
            pass
    if not got:
        return 0, "", ""
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body.decode("utf-8", "replace")


def get(p, target, host="localhost", headers=()):
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return raw(p, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode("latin-1"))


def healthy(p):
    return p.edged.healthz()[0] == 200


@pytest.fixture(scope="module")
def counts(p):
    """Rows a request could write (sessions, failed-authorization counters):
    compared before and after each bad request."""
    def snapshot():
        return p.sql("SELECT (SELECT count(*) FROM frontdesk.sessions), "
                     "(SELECT count(*) FROM frontdesk.audit_events)")
    return snapshot


# ---------------------------------------------------------------------------

def test_healthz_and_platform_host_without_brand(p):
    assert get(p, "/healthz")[0] == 200
    status, _, body = get(p, "/player_api.php?username=a&password=b")
    assert status == 404 and "/t/" in body, body
    status, _, body = get(p, "/get.php?username=a&password=b", host="unknown.example")
    assert status == 404 and "unknown host" in body, body
    status, _, body = get(p, "/t/no-such-tenant/player_api.php")
    assert status == 404 and "unknown tenant" in body, body


@pytest.mark.parametrize("target,why", [
    ("/player_api.php?username=a&username=b&password=c", "username: given more than once"),
    (f"/player_api.php?username=a%00b&password={PASSWORD_MARK}", "NUL"),
    (f"/get.php?username=%ff%fe&password={PASSWORD_MARK}", "username: not valid UTF-8"),
    (f"/live/u%00x/{PASSWORD_MARK}/1.ts", "NUL"),
    ("/player_api.php?username=" + "a" * 5000 + "&password=x", "username: longer than"),
    (f"/live/u/{PASSWORD_MARK}/../../../etc/passwd", "path"),
    (f"/live/u/{PASSWORD_MARK}/..%2f..%2fetc%2fpasswd", "path"),
    ("/t/../healthz", "path"),
    ("/./healthz", "path"),
])
def test_bad_requests_are_refused_naming_what_is_wrong(p, counts, target, why):
    before = counts()
    status, _, body = get(p, target)
    assert status == 400, (target, status, body)
    assert why in body, (target, body)
    assert counts() == before
    assert healthy(p)


def test_methods_other_than_get_head_post(p):
    status, head, body = raw(p, b"PUT /player_api.php HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
    assert status == 405 and "Allow: GET, HEAD, POST" in head, (status, head, body)
    status, _, _ = raw(p, b"DELETE /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status == 405


def test_64k_query_and_headers_are_refused_and_edged_keeps_serving(p, counts):
    before = counts()
    big = "x" * (64 * 1024)
    status, _, _ = get(p, f"/player_api.php?username=u&password={PASSWORD_MARK}&pad={big}")
    assert 400 <= status < 500 or status == 0, status
    status, _, _ = get(p, "/healthz", headers=[("X-Pad", big)])
    assert 400 <= status < 500 or status == 0, status
    many = [(f"X-H{i}", "v" * 100) for i in range(800)]
    status, _, _ = get(p, "/healthz", headers=many)
    assert 400 <= status < 500 or status == 0, status
    assert counts() == before
    assert healthy(p)


def test_form_body_over_64k_and_repeated_form_fields(p, counts):
    before = counts()
    body = "username=a&password=b&pad=" + "y" * (70 * 1024)
    req = (f"POST /t/x/player_api.php HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded"
           f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()
    status, _, text = raw(p, req)
    assert status in (400, 413), (status, text)
    body = f"username=a&username=b&password={PASSWORD_MARK}"
    req = (f"POST /player_api.php HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded"
           f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()
    status, _, text = raw(p, req)
    assert status == 400 and "username: given more than once" in text, (status, text)
    assert counts() == before


def test_a_slow_client_is_cut_off_and_others_are_served(p):
    """Headers sent a byte at a time, slower than the connection timeout:
    edged closes the connection; meanwhile another client is answered at once."""
    s = socket.create_connection(("127.0.0.1", port_of(p)), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    t0 = time.time()
    assert healthy(p)
    assert time.time() - t0 < 1.0
    closed_after = None
    try:
        while time.time() - t0 < CONN_TIMEOUT + 5:
            time.sleep(0.5)
            s.sendall(b"")  # nothing: the client just sits there
            s.settimeout(0.5)
            try:
                if s.recv(1024) == b"":
                    closed_after = time.time() - t0
                    break
            except socket.timeout:
                continue
    except OSError:
        closed_after = time.time() - t0
    finally:
        s.close()
    assert closed_after is not None and closed_after <= CONN_TIMEOUT + 2, closed_after


def test_thousands_of_idle_connections(p):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNECTIONS + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    socks = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            socks.append(socket.create_connection(("127.0.0.1", port_of(p)), timeout=5))
        t0 = time.time()
        for _ in range(20):
            assert healthy(p)
        assert time.time() - t0 < 2.0, "edged slowed down by idle connections"
    finally:
        for s in socks:
            s.close()
    assert healthy(p)


def test_keep_alive_serves_several_requests_on_one_connection(p):
    with socket.create_connection(("127.0.0.1", port_of(p)), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            while b"ok\n" not in got:
                chunk = s.recv(4096)
                assert chunk, "closed"
                got += chunk
            assert got.startswith(b"HTTP/1.1 200")


def test_sigterm_with_idle_connections_stops_at_once(p):
    """Drain: nothing in flight, so SIGTERM ends edged without waiting for the
    idle keep-alive connections; then a fresh edged serves again."""
    socks = [socket.create_connection(("127.0.0.1", port_of(p)), timeout=5) for _ in range(50)]
    try:
        t0 = time.time()
        p.edged.proc.send_signal(signal.SIGTERM)
        rc = p.edged.proc.wait(10)
        took = time.time() - t0
    finally:
        for s in socks:
            s.close()
    assert rc == 0 and took < 3.0, (rc, took)
    EARLIER_LOGS.append(p.edged.output())
    p.replace_edged()
    assert healthy(p)


def test_no_password_in_any_log_line(p):
    """Runs last: every request above that carried PASSWORD_MARK was logged
    (its path redacted, its query left out)."""
    logs = "".join(EARLIER_LOGS) + p.edged.output()
    assert "http GET /live/u/***" in logs, logs[-2000:]
    assert PASSWORD_MARK not in logs
    assert urllib.parse.quote(PASSWORD_MARK) not in logs
