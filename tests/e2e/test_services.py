"""The four services, as a stock client sees them: reflection lists them and
their descriptors (enough to call a method without the .proto files), Health
says SERVING, and the runtime's error paths answer with the right status while
the server keeps serving."""
import importlib
import os
import subprocess
import sys
import tempfile
import threading

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fdtest  # noqa: E402
from fdtest import call, string_field  # noqa: E402

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402


def reflection_pb2(version):
    """Compile grpc's reflection.proto for this Python (Debian packages no
    grpcio-reflection) and load the generated module."""
    import importlib.util
    out = tempfile.mkdtemp(prefix="fdrefl")
    proto = f"grpc/reflection/{version}/reflection.proto"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I/usr/share/grpc-proto",
                    f"--python_out={out}", proto], check=True)
    path = os.path.join(out, proto.replace(".proto", "_pb2.py"))
    spec = importlib.util.spec_from_file_location(f"reflection_{version}_pb2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def platform():
    db = fdtest.Database()
    svcs = {name: fdtest.Service(name, db.url) for name in fdtest.SERVICES}
    try:
        for s in svcs.values():
            s.wait_serving()
        yield svcs
    finally:
        codes = {name: s.stop() for name, s in svcs.items()}
        db.drop()
        assert codes == {name: 0 for name in svcs}, codes


def reflect(channel, pb, requests):
    stub = channel.stream_stream(
        f"/grpc.reflection.{pb.DESCRIPTOR.package.split('.')[-1]}.ServerReflection/ServerReflectionInfo",
        request_serializer=pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=pb.ServerReflectionResponse.FromString)
    return list(stub(iter(requests), timeout=10))


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_lists_and_describes_every_service(platform, version):
    pb = reflection_pb2(version)
    for name, full in fdtest.SERVICES.items():
        with platform[name].channel() as ch:
            [listed, described] = reflect(ch, pb, [
                pb.ServerReflectionRequest(list_services=""),
                pb.ServerReflectionRequest(file_containing_symbol=full),
            ])
            names = {s.name for s in listed.list_services_response.service}
            assert full in names, names
            assert "grpc.health.v1.Health" in names
            assert f"grpc.reflection.{version}.ServerReflection" in names

            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in described.file_descriptor_response.file_descriptor_proto]
            assert files, described
            # Everything a client needs is there: build the messages and call a method.
            pool = descriptor_pool.DescriptorPool()
            pending = {f.name: f for f in files}
            while pending:
                for fname, f in list(pending.items()):
                    if all(d not in pending for d in f.dependency):
                        pool.Add(f)
                        del pending[fname]
            service = pool.FindServiceByName(full)
            method = service.methods[0]
            req_cls = message_factory.MessageFactory(pool).GetPrototype(method.input_type)
            code, _ = call(ch, f"/{full}/{method.name}", req_cls().SerializeToString())
            # Every service's methods are built, and want a credential.
            assert code == "UNAUTHENTICATED", (full, method.name, code)


def test_reflection_unknown_symbol_is_not_found(platform):
    pb = reflection_pb2("v1")
    with platform["authd"].channel() as ch:
        [r] = reflect(ch, pb, [pb.ServerReflectionRequest(file_containing_symbol="no.such.Thing")])
        assert r.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_serving_per_service(platform):
    for name, full in fdtest.SERVICES.items():
        with platform[name].channel() as ch:
            for svc in ["", full]:
                code, raw = call(ch, "/grpc.health.v1.Health/Check", string_field(1, svc.encode()))
                assert code == "OK" and fdtest.health_status(raw) == 1, (name, svc, code, raw)
            code, _ = call(ch, "/grpc.health.v1.Health/Check", string_field(1, b"no.Such"))
            assert code == "NOT_FOUND"


def still_serving(ch):
    code, raw = call(ch, "/grpc.health.v1.Health/Check")
    assert code == "OK" and fdtest.health_status(raw) == 1


def test_error_paths_and_the_server_keeps_serving(platform):
    svc = platform["authd"]
    with svc.channel(options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        # A method that does not exist at all: UNIMPLEMENTED at once, not a hang.
        code, _ = call(ch, "/frontdesk.v1.AuthService/NoSuchMethod", b"", timeout=2)
        assert code == "UNIMPLEMENTED"
        still_serving(ch)
        # routerd is built like the others: its methods want a credential, a
        # method it does not have is UNIMPLEMENTED.
        with platform["routerd"].channel() as rch:
            for m in ("RegisterNode", "Route", "Heartbeat", "ListNodes"):
                code, _ = call(rch, f"/frontdesk.v1.RoutingService/{m}", b"")
                assert code == "UNAUTHENTICATED", (m, code)
            code, _ = call(rch, "/frontdesk.v1.RoutingService/NoSuchMethod", b"", timeout=2)
            assert code == "UNIMPLEMENTED"
            still_serving(rch)
        # Larger than FRONTDESK_MAX_MESSAGE_BYTES (4 MiB by default).
        code, _ = call(ch, "/frontdesk.v1.AuthService/Login", string_field(2, b"x" * (5 << 20)))
        assert code == "RESOURCE_EXHAUSTED"
        still_serving(ch)
        # Bytes that do not decode: a length running past the end.
        code, msg = call(ch, "/grpc.health.v1.Health/Check", b"\x0a\x40abc")
        assert code == "INVALID_ARGUMENT" and "decode" in msg
        still_serving(ch)
        # Wire type of a group: not protobuf 3.
        code, _ = call(ch, "/grpc.health.v1.Health/Check", b"\x0b\x0c")
        assert code == "INVALID_ARGUMENT"
        still_serving(ch)


@pytest.mark.parametrize("value,why", [
    (b"alice\x00evil", "NUL"),
    (b"\xff\xfe", "UTF-8"),
    (b"\xc0\xaf", "UTF-8"),           # overlong '/'
    (b"\xed\xa0\x80", "UTF-8"),       # a UTF-16 surrogate
])
def test_bad_strings_are_refused_naming_the_field(platform, value, why):
    with platform["linesd"].channel() as ch:
        # Health/Check's field 1 is the string `service`; the check runs before any handler.
        code, msg = call(ch, "/grpc.health.v1.Health/Check", string_field(1, value))
        assert code == "INVALID_ARGUMENT", (code, msg)
        assert msg.startswith("service:") and why in msg, msg
        # The same in a frontdesk method: CreateLineRequest.username (field 3).
        code, msg = call(ch, "/frontdesk.v1.LinesService/CreateLine", string_field(3, value))
        assert code == "INVALID_ARGUMENT", (code, msg)
        assert msg.startswith("username:") and why in msg, msg
        # Nested: UpdateLineRequest.notes (field 7) is an OptionalString {value = 1}.
        code, msg = call(ch, "/frontdesk.v1.LinesService/UpdateLine",
                         string_field(7, string_field(1, value)))
        assert code == "INVALID_ARGUMENT", (code, msg)
        assert msg.startswith("notes.value:") and why in msg, msg
        still_serving(ch)


def test_bad_string_in_a_stream_message(platform):
    # Each message of a bidirectional stream is checked too (reflection's `host`).
    with platform["routerd"].channel() as ch:
        stub = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as e:
            list(stub(iter([string_field(1, b"bad\x00host")]), timeout=5))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "host" in e.value.details()
        still_serving(ch)


def test_deadline_exceeded_on_an_open_stream(platform):
    with platform["billingd"].channel() as ch:
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch")
        seen = []
        with pytest.raises(grpc.RpcError) as e:
            for r in watch(b"", timeout=0.5):
                seen.append(fdtest.health_status(r))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert seen == [1]
        still_serving(ch)


def test_many_concurrent_calls(platform):
    errors = []

    def worker():
        with platform["routerd"].channel() as ch:
            for _ in range(200):
                code, raw = call(ch, "/grpc.health.v1.Health/Check")
                if code != "OK":
                    errors.append(code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
