"""fdapi - typed clients for the frontdesk API in end-to-end tests.

The .proto files of api/frontdesk/v1 are compiled with Debian's `protoc`
(which matches python3-protobuf) into a temporary folder once per process,
and the generated modules are importable from here:

    import fdapi
    auth = fdapi.Auth(channel, token=None)
    r = auth.Login(tenant_slug="platform", username="admin", password="...")
    me = auth.with_token(r.access_token).WhoAmI()
    fdapi.code_of(auth.GetTenant, tenant_id=7)       # "OK", "NOT_FOUND", ...
    bill = fdapi.Billing(billingd_channel, token=r.access_token)
    bill.GetBalance(kind=fdapi.billing_pb2.ACCOUNT_KIND_ISSUANCE)

Each RPC of AuthService is a method taking either a request message or the
request's fields as keyword arguments; it returns the response or raises
grpc.RpcError. The credential goes in `authorization: Bearer <token>`.
Billing does the same for BillingService (billingd), Lines for LinesService
(linesd) and Routing for RoutingService (routerd).
"""
import atexit
import glob
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

SOURCE = os.environ.get("FD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
API = os.path.join(SOURCE, "api")


def _compile():
    out = tempfile.mkdtemp(prefix="fdapi")
    atexit.register(shutil.rmtree, out, True)
    protos = sorted(glob.glob(os.path.join(API, "frontdesk", "v1", "*.proto")))
    if not protos:
        raise RuntimeError(f"no .proto files under {API}")
    rel = [os.path.relpath(p, API) for p in protos]
    r = subprocess.run(["protoc", "-I", API, f"--python_out={out}", *rel],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"protoc failed:\n{r.stderr}")
    sys.path.insert(0, out)
    return out


_OUT = _compile()
common_pb2 = importlib.import_module("frontdesk.v1.common_pb2")
auth_pb2 = importlib.import_module("frontdesk.v1.auth_pb2")
billing_pb2 = importlib.import_module("frontdesk.v1.billing_pb2")
lines_pb2 = importlib.import_module("frontdesk.v1.lines_pb2")
routing_pb2 = importlib.import_module("frontdesk.v1.routing_pb2")

AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
BILLING_SERVICE = billing_pb2.DESCRIPTOR.services_by_name["BillingService"]
LINES_SERVICE = lines_pb2.DESCRIPTOR.services_by_name["LinesService"]
ROUTING_SERVICE = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"]

# Scope names as JWT claims write them ("credits_read"), and back.
SCOPE_NAMES = {v.number: v.name[len("SCOPE_"):].lower()
               for v in common_pb2.Scope.DESCRIPTOR.values if v.number != 0}
SCOPE_BY_NAME = {name: num for num, name in SCOPE_NAMES.items()}


def scope(name):
    """The Scope enum value of a claim name ("credits_read")."""
    return SCOPE_BY_NAME[name]


def scope_names(values):
    """A set of claim names from Scope enum values."""
    return {SCOPE_NAMES.get(v, v) for v in values}


def bearer(token):
    return [("authorization", f"Bearer {token}")]


class Client:
    """Base: one unary method per RPC of `service` (a ServiceDescriptor)."""

    service = None
    module = None

    def __init__(self, channel, token=None, timeout=10.0):
        self.channel = channel
        self.token = token
        self.timeout = timeout

    def with_token(self, token):
        return type(self)(self.channel, token, self.timeout)

    def metadata(self, token=None):
        t = token if token is not None else self.token
        return bearer(t) if t else None

    def stub(self, name):
        m = self.service.methods_by_name[name]
        req = getattr(self.module, m.input_type.name)
        resp = getattr(self.module, m.output_type.name)
        return (req, resp, self.channel.unary_unary(
            f"/{self.service.full_name}/{name}",
            request_serializer=req.SerializeToString,
            response_deserializer=resp.FromString))

    def call(self, _method, _request=None, *, metadata=None, timeout=None, **fields):
        """Calls RPC `_method` with a request message or its fields (a request
        field may be called `name`, hence the underscores)."""
        request = _request
        req_cls, _, stub = self.stub(_method)
        if request is None:
            request = req_cls(**fields)
        elif fields:
            raise TypeError("pass a request or fields, not both")
        md = metadata if metadata is not None else self.metadata()
        return stub(request, timeout=timeout or self.timeout, metadata=md)

    def raw(self, _method, payload, *, metadata=None, timeout=None):
        """Send raw bytes as the request (malformed input); returns the decoded response."""
        _, resp_cls, _ = self.stub(_method)
        stub = self.channel.unary_unary(f"/{self.service.full_name}/{_method}",
                                        response_deserializer=resp_cls.FromString)
        md = metadata if metadata is not None else self.metadata()
        return stub(payload, timeout=timeout or self.timeout, metadata=md)


def _bind(cls):
    for m in cls.service.methods:
        def method(self, request=None, _name=m.name, **kw):
            return self.call(_name, request, **kw)
        method.__name__ = m.name
        method.__doc__ = f"{cls.service.full_name}/{m.name}"
        setattr(cls, m.name, method)
    return cls


@_bind
class Auth(Client):
    """frontdesk.v1.AuthService."""
    service = AUTH_SERVICE
    module = auth_pb2


@_bind
class Billing(Client):
    """frontdesk.v1.BillingService (billingd): GetBalance, MintCredits,
    TransferCredits, Charge, Refund, ListLedger."""
    service = BILLING_SERVICE
    module = billing_pb2


@_bind
class Lines(Client):
    """frontdesk.v1.LinesService (linesd). WatchLineEvents is server
    streaming: use watch()."""
    service = LINES_SERVICE
    module = lines_pb2

    def watch(self, *, metadata=None, timeout=None, **fields):
        """WatchLineEvents: an iterator of WatchLineEventsResponse (cancel() it)."""
        stub = self.channel.unary_stream(
            f"/{self.service.full_name}/WatchLineEvents",
            request_serializer=lines_pb2.WatchLineEventsRequest.SerializeToString,
            response_deserializer=lines_pb2.WatchLineEventsResponse.FromString)
        md = metadata if metadata is not None else self.metadata()
        return stub(lines_pb2.WatchLineEventsRequest(**fields), timeout=timeout, metadata=md)


@_bind
class Routing(Client):
    """frontdesk.v1.RoutingService (routerd). WatchNodes is server streaming:
    use watch(); StreamHeartbeats is bidirectional: use heartbeats(). The
    unary methods (Heartbeat included) are bound like the other clients'."""
    service = ROUTING_SERVICE
    module = routing_pb2

    def watch(self, *, metadata=None, timeout=None, **fields):
        """WatchNodes: an iterator of WatchNodesResponse (cancel() it)."""
        stub = self.channel.unary_stream(
            f"/{self.service.full_name}/WatchNodes",
            request_serializer=routing_pb2.WatchNodesRequest.SerializeToString,
            response_deserializer=routing_pb2.WatchNodesResponse.FromString)
        md = metadata if metadata is not None else self.metadata()
        return stub(routing_pb2.WatchNodesRequest(**fields), timeout=timeout, metadata=md)

    def heartbeats(self, request_iterator, *, metadata=None, timeout=None):
        """StreamHeartbeats: sends the StreamHeartbeatsRequest messages of
        request_iterator; returns an iterator of StreamHeartbeatsResponse
        (cancel() it to break the stream)."""
        stub = self.channel.stream_stream(
            f"/{self.service.full_name}/StreamHeartbeats",
            request_serializer=routing_pb2.StreamHeartbeatsRequest.SerializeToString,
            response_deserializer=routing_pb2.StreamHeartbeatsResponse.FromString)
        md = metadata if metadata is not None else self.metadata()
        return stub(request_iterator, timeout=timeout, metadata=md)


def code_of(fn, *args, **kwargs):
    """The status code name of a call: "OK" or e.g. "NOT_FOUND"."""
    try:
        fn(*args, **kwargs)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def outcome(fn, *args, **kwargs):
    """(code name, response or details) of a call."""
    try:
        return "OK", fn(*args, **kwargs)
    except grpc.RpcError as e:
        return e.code().name, e.details()


def expect(code, fn, *args, **kwargs):
    """Asserts that the call ends with `code`; returns the details (or the response for OK)."""
    got, what = outcome(fn, *args, **kwargs)
    assert got == code, f"{getattr(fn, '__name__', fn)}: want {code}, got {got}: {what}"
    return what


def replace_bytes(message, placeholder, raw):
    """The serialized message with `placeholder` (text of one string field)
    replaced by `raw`, of the same length, so the framing stays valid: a way to
    send bytes protobuf would refuse to serialize (bad UTF-8)."""
    data = message.SerializeToString()
    ph = placeholder.encode() if isinstance(placeholder, str) else placeholder
    assert len(ph) == len(raw), "placeholder and raw bytes must have the same length"
    assert data.count(ph) == 1, "placeholder must occur once"
    return data.replace(ph, raw)


def method_names():
    return [m.name for m in AUTH_SERVICE.methods]


def billing_method_names():
    return [m.name for m in BILLING_SERVICE.methods]


def routing_method_names():
    return [m.name for m in ROUTING_SERVICE.methods]
