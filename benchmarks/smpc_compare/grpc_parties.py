"""Three smpc parties as OS processes over the real gRPC transport (mutual TLS on loopback).

smpc's party service (``smpc.service.server``) hands a peer's Exchange stream to the job's
``GrpcTransport`` only inside its job manager (policy, audit, two-phase start), which the
benchmark does not want to time or configure. This is the same wiring without the job
manager: a ``PartyPeer`` servicer that authenticates the caller by its certificate, reads the
HELLO frame and calls ``GrpcTransport.accept``, registered and served with smpc's own
``add_peer_servicer``, ``server_options`` and ``server_credentials``; the dialing side uses ``secure_channel`` and
``GrpcTransport.dial``. Frames, chunking, TLS and the Context on top are exactly the
production ones.
"""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc

from smpc.service.pki import init_certs
from smpc.transport.grpc import GrpcTransport, peer_identity, secure_channel, server_credentials, server_options
from smpc.v1 import peer_pb2, peer_pb2_grpc

NAMES = ["bank_a", "bank_b", "bank_c"]


def make_certs(folder: Path) -> Path:
    """A development CA and one certificate per party (``smpc certs init``'s code)."""
    init_certs(NAMES, folder)
    return folder


class Router(peer_pb2_grpc.PartyPeerServicer):
    """Hands each incoming Exchange stream to the transport of the job it names."""

    def __init__(self, me: str, wait_s: float = 60.0):
        self.me = me
        self.wait_s = wait_s
        self.transports: dict[str, GrpcTransport] = {}
        self.cond = threading.Condition()

    def add(self, transport: GrpcTransport) -> None:
        with self.cond:
            self.transports[transport.job_id] = transport
            self.cond.notify_all()

    def remove(self, job_id: str) -> None:
        with self.cond:
            self.transports.pop(job_id, None)

    def Exchange(self, request_iterator, context):  # noqa: N802 - gRPC method name
        caller = peer_identity(context)
        if caller not in NAMES:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{self.me}: {caller!r} is not a party")
        first = next(request_iterator, None)
        hello = first[0] if isinstance(first, tuple) else first  # (frame, payload) with add_peer_servicer
        if hello is None or hello.kind != peer_pb2.Frame.HELLO or hello.party != caller:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.me}: expected a HELLO from {caller}")
        with self.cond:
            self.cond.wait_for(lambda: hello.job_id in self.transports, timeout=self.wait_s)
            transport = self.transports.get(hello.job_id)
        if transport is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{self.me}: no job {hello.job_id[:64]!r}")
        peer = NAMES.index(caller)
        if peer >= transport.rank:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.me}: the lower rank dials")
        return transport.accept(peer, request_iterator, context)


def _register(servicer, server) -> None:
    """Register the peer service exactly as the party service does (``add_peer_servicer``:
    the Exchange stream on smpc's raw frame (de)serializers), or with the generated function
    on a transport that has no such helper."""
    from smpc.transport import grpc as transport_grpc

    register = getattr(transport_grpc, "add_peer_servicer", None)
    if register is not None:
        register(servicer, server)
    else:
        peer_pb2_grpc.add_PartyPeerServicer_to_server(servicer, server)


class PartyNode:
    """One party's gRPC server and its long-lived channels to the parties it dials."""

    def __init__(self, rank: int, certs: Path):
        self.rank = rank
        self.me = NAMES[rank]
        certs = Path(certs)
        self.ca = (certs / "ca.pem").read_bytes()
        self.cert = (certs / f"{self.me}.pem").read_bytes()
        self.key = (certs / f"{self.me}.key").read_bytes()
        self.router = Router(self.me)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-rpc"),
                                  options=server_options())
        _register(self.router, self.server)
        self.port = self.server.add_secure_port("127.0.0.1:0", server_credentials(self.ca, self.cert, self.key))
        self.server.start()
        self.channels: dict[int, grpc.Channel] = {}

    def connect(self, addresses: dict[int, str]) -> None:
        """Channels to the parties of higher rank, at ``addresses`` (their port or a relay's)."""
        for peer, address in addresses.items():
            self.channels[peer] = secure_channel(address, self.ca, self.cert, self.key, identity=NAMES[peer])

    def open_job(self, job_id: str) -> GrpcTransport:
        transport = GrpcTransport(self.rank, len(NAMES), job_id, NAMES)
        self.router.add(transport)
        for peer in range(self.rank + 1, len(NAMES)):
            transport.dial(peer, self.channels[peer])
        return transport

    def close_job(self, transport: GrpcTransport) -> None:
        transport.close()
        self.router.remove(transport.job_id)

    def stop(self) -> None:
        for ch in self.channels.values():
            ch.close()
        self.server.stop(0)
