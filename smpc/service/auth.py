"""Who is calling a party's gRPC services, by its certificate: shared by the party server and
the worker processes of its pool (``smpc.service.pool``), so that a worker's peer streams
pass exactly the checks the party's own do (a configured peer's party certificate, its pinned
fingerprint, the revocation list) and open with the same HELLO checks.
"""

from __future__ import annotations

import grpc

from smpc.service.identity import CLIENT, PARTY, CertIdentity, IdentityError, RevocationList, identity_of_pem
from smpc.transport.grpc import MalformedMessage, peer_certificate
from smpc.v1 import peer_pb2


class CallerAuth:
    """The caller's identity: its certificate's (name and role), or (plaintext mode) what it
    claims. ``config`` needs ``name`` and ``peers`` only: a worker process of the party's
    pool checks its callers with the same rules from those alone.

    >>> from types import SimpleNamespace
    >>> from smpc.service.config import Peer
    >>> peers = {"bank_b": Peer("bank_b", "127.0.0.1:1", "bank_b", None)}
    >>> auth = CallerAuth(SimpleNamespace(name="bank_a", peers=peers), False)
    >>> auth.is_peer(CertIdentity("bank_b", PARTY, 0, "")), auth.is_peer(CertIdentity("bank_b", CLIENT, 0, ""))
    (True, False)
    """

    def __init__(self, config, insecure: bool, crl: RevocationList | None = None):
        self.config = config
        self.insecure = insecure
        self.crl = crl
        self.peer_by_identity = {p.identity: p.name for p in config.peers.values()}
        self.pins = {p.name: p.fingerprint for p in config.peers.values() if p.fingerprint}

    def caller(self, context: grpc.ServicerContext) -> CertIdentity:
        me = self.config.name
        if self.insecure:
            metadata = dict(context.invocation_metadata())
            claimed = metadata.get("x-smpc-party") or metadata.get("x-smpc-identity")
            if not claimed:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "plaintext mode: send x-smpc-identity metadata")
            role = PARTY if "x-smpc-party" in metadata else CLIENT
            return CertIdentity(str(claimed)[:64], role, 0, "")
        pem = peer_certificate(context)
        if not pem:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{me}: no client certificate")
        try:
            who = identity_of_pem(pem)
            if self.crl is not None:
                self.crl.check(who)
        except IdentityError as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{me} refuses the caller: {exc}")
        return who

    def identity(self, context: grpc.ServicerContext) -> str:
        """The job service's caller: a client, or a party acting as its own bank."""
        return self.caller(context).name

    def is_peer(self, who: CertIdentity) -> bool:
        return who.role == PARTY and who.name in self.peer_by_identity

    def peer(self, context: grpc.ServicerContext) -> str:
        """The configured peer calling, by its party certificate; PERMISSION_DENIED for anyone
        else (a client certificate with a party's name included)."""
        who = self.caller(context)
        me = self.config.name
        if not self.is_peer(who):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{me}: the peer service is for the configured compute parties' party certificates; "
                          f"the caller is {who.role} {who.name!r}")
        name = self.peer_by_identity[who.name]
        pin = self.pins.get(name)
        if pin is not None and not self.insecure and who.fingerprint != pin:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{me}: {name}'s certificate is not the one pinned by peers.{name}.fingerprint")
        return name


def read_hello(request_iterator, context: grpc.ServicerContext, me: str, caller: str) -> peer_pb2.Frame:
    """The HELLO frame that opens an Exchange stream from ``caller`` (authenticated already);
    the call ends with INVALID_ARGUMENT or PERMISSION_DENIED when the stream opens otherwise
    or the frame names another party than the certificate."""
    try:
        first = next(request_iterator)
    except StopIteration:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{me}: the stream ended before its HELLO frame")
    if isinstance(first, MalformedMessage):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{me}: the first message is not a frame ({first})")
    hello, _ = first
    if hello.kind != peer_pb2.Frame.HELLO:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{me}: a stream must start with a HELLO frame")
    if hello.party != caller:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"{me}: HELLO names {hello.party!r} but the certificate is {caller!r}")
    return hello


__all__ = ["CallerAuth", "read_hello"]
