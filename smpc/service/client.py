"""A client of a party's job service: submit, follow, fetch, cancel (``smpc job ...``).

    client = JobClient("127.0.0.1:50051", ca="certs/ca.pem", cert="certs/bank_a.pem", key="certs/bank_a.key")
    job_id = client.submit("default_rate_overall", {"label": "creditability", "positive": "bad"})
    result = client.wait(job_id, on_event=print)      # dict of revealed values, or raises

Over mutual TLS every submission is signed with the certificate's key (``identity.spec_payload``)
so that every party can check who asked. Job ids are ``REQUESTER/ID``: ``submit`` returns the
full id; ``get``, ``wait``, ``cancel`` take it, or a bare ``ID`` for one of the caller's own jobs.

Job errors come back as the matching ``smpc`` exception: ``PolicyError`` (a party refused;
the message names it and the rule), ``InputError``, ``PartyUnavailable``, ``ProtocolTimeout``,
``JobCancelled``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smpc import errors
from smpc.errors import PartyUnavailable, SmpcError
from smpc.service.identity import (
    IdentityError,
    identity_of,
    load_certificate,
    load_private_key,
    namespaced_job_id,
    recipients_for,
    sign,
    spec_payload,
)
from smpc.service.states import STATE_NAMES, TERMINAL_NAMES
from smpc.transport.grpc import channel_options, is_loopback, secure_channel
from smpc.v1 import jobs_pb2, jobs_pb2_grpc


class JobCancelled(SmpcError):
    """The job was cancelled (by its requester, or a party shut down)."""


class JobFailed(SmpcError):
    """The job failed for a reason without a more specific smpc error class."""


def error_from(err: jobs_pb2.JobError) -> SmpcError:
    """The smpc exception for a job's error (type name -> class), keeping party and rule."""
    cls = {"Cancelled": JobCancelled}.get(err.type) or getattr(errors, err.type, None)
    if not (isinstance(cls, type) and issubclass(cls, SmpcError)):
        cls = JobFailed
    message = err.message or err.type
    exc = cls(message, peer=err.party or None) if issubclass(cls, PartyUnavailable) else cls(message)
    exc.party = err.party
    exc.rule = err.rule
    return exc


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def _cert_identity(pem: bytes) -> str | None:
    """The name in the certificate's smpc identity: who the parties see this client as."""
    try:
        return identity_of(load_certificate(pem)).name
    except IdentityError:
        return None  # not one of ours: the party will say so


def result_elsewhere(status: jobs_pb2.JobStatus, result, identity: str | None) -> str | None:
    """Why a succeeded job's ``result`` from ``status.party`` holds nothing for ``identity``,
    or None when it does. A per-bank part (``by_bank``, multi_lending) and a result revealed
    to one bank alone (blacklist_hits) are handed out only by that bank's own party (see
    ``jobs.addressed_to``); any other party answers with an empty but successful result."""
    party, job = status.party, status.job_id
    if not isinstance(result, dict):
        return None
    by_bank = result.get("by_bank")
    if isinstance(by_bank, dict):
        if identity is None or identity in by_bank:
            return None
        why = (f"{party} holds no part of job {job}'s result for {identity}: {status.analysis} releases "
               "each bank's own part (by_bank) only at that bank's own party")
    elif not result:
        why = (f"{party} holds no result of job {job} for {identity or 'you'}: {status.analysis} revealed "
               "its result only to the requesting bank's own party")
    else:
        return None
    if identity is None or identity == party:
        return why
    return why + f"; if {identity} is a compute party, fetch it from {identity}'s own party"


class JobClient:
    """One connection to one party's job service (mutual TLS, or plaintext for development)."""

    def __init__(self, address: str, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, server_identity: str | None = None,
                 insecure_identity: str | None = None,
                 timeout: float = 30.0):
        """``server_identity`` pins the party's certificate identity (default: any certificate
        of the CA that is valid for the address). ``insecure_identity`` selects plaintext
        development mode and names the caller."""
        self.address = address
        self.timeout = timeout
        self.signs = insecure_identity is None
        if insecure_identity is not None:
            if not is_loopback(address):
                raise SmpcError(f"--insecure-dev-plaintext works on loopback addresses only (127.0.0.1, ::1, "
                                f"localhost), not {address!r}")
            self.channel = grpc.insecure_channel(address, options=channel_options())
            self.metadata = (("x-smpc-identity", insecure_identity),)
            self.identity = insecure_identity
        else:
            if not (ca and cert and key):
                raise SmpcError("a job client needs --ca, --cert and --key (mutual TLS)")
            cert_pem, key_pem = _read(cert), _read(key)
            self.channel = secure_channel(address, _read(ca), cert_pem, key_pem, identity=server_identity)
            self.metadata = ()
            self.identity = _cert_identity(cert_pem)
            self._cert_pem = cert_pem.decode(errors="replace")
            self._key_pem = key_pem
        self.stub = jobs_pb2_grpc.JobServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, timeout: float | None = None):
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address, plaintext=not self.signs) from None

    # ----- the job service ---------------------------------------------------------------
    def submit_status(self, analysis: str, params: Mapping[str, object] | None = None, *, source: str = "",
                      job_id: str = "", recipients: list[str] = ()) -> jobs_pb2.JobStatus:
        params = {k: _param_text(v) for k, v in (params or {}).items() if v is not None}
        req = jobs_pb2.SubmitRequest(job_id=job_id, analysis=analysis, params=params, source=source,
                                     recipients=list(recipients))
        if self.signs:  # mutual TLS: sign the job as the parties will see it
            self._sign(req)
        return self._call("Submit", req, timeout=max(self.timeout, 60.0))

    def _sign(self, req: jobs_pb2.SubmitRequest) -> None:
        if self.identity is None:
            raise SmpcError("the client certificate has no smpc identity (smpc://client/NAME or smpc://party/NAME); "
                            "re-issue it with `smpc certs init`")
        try:
            full_id = namespaced_job_id(self.identity, req.job_id or uuid.uuid4().hex)
        except IdentityError as exc:
            raise errors.InputError(str(exc)) from None
        req.job_id = full_id.partition("/")[2]
        recipients = recipients_for(self.identity, req.recipients)
        del req.recipients[:]
        req.recipients.extend(recipients)
        req.signed_at = int(time.time())
        payload = spec_payload(full_id, req.analysis, dict(req.params), req.source, recipients, self.identity,
                               req.signed_at)
        req.signature = sign(load_private_key(self._key_pem), payload)
        req.certificate_pem = self._cert_pem

    def submit(self, analysis: str, params: Mapping[str, object] | None = None, **kw) -> str:
        """Submit a job; returns its id once every party accepted it and it runs. Raises the
        job's error (``PolicyError`` naming the refusing party and rule) if it did not start."""
        status = self.submit_status(analysis, params, **kw)
        if STATE_NAMES[status.state] in ("refused", "failed", "cancelled"):
            raise error_from(status.error)
        return status.job_id

    def get(self, job_id: str) -> jobs_pb2.JobStatus:
        return self._call("Get", jobs_pb2.JobRef(job_id=job_id))

    def cancel(self, job_id: str) -> jobs_pb2.JobStatus:
        return self._call("Cancel", jobs_pb2.JobRef(job_id=job_id))

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[jobs_pb2.JobEvent]:
        """The party's events of the job, from the first until it ends."""
        try:
            yield from self.stub.Watch(jobs_pb2.JobRef(job_id=job_id), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address, plaintext=not self.signs) from None

    def wait(self, job_id: str, on_event: Callable[[jobs_pb2.JobEvent], None] | None = None,
             timeout: float | None = None) -> dict:
        """Follow the job to its end; the result dict, or the job's error raised. A job that
        ended without a result raises the error of its last event: a party that shuts down
        tells its watchers how the job ended before it goes, and may be gone when asked again."""
        last = None
        try:
            for event in self.events(job_id, timeout=timeout):
                last = event
                if on_event is not None:
                    on_event(event)
        except PartyUnavailable as exc:
            if last is None or isinstance(exc, errors.ProtocolTimeout):  # never reached, or our own deadline
                raise
            raise PartyUnavailable(
                f"{self.address} went away while job {job_id} ran ({exc}); a job fails at every party when one of "
                "them stops, and `smpc job get` there says how it ended once the party is back", peer=self.address,
            ) from None
        if last is not None and STATE_NAMES[last.state] in TERMINAL_NAMES - {"succeeded"}:
            raise error_from(last.error)
        return self.result(job_id)

    def result(self, job_id: str) -> dict:
        status = self.get(job_id)
        state = STATE_NAMES[status.state]
        if state == "succeeded":
            if not status.result_json:
                raise errors.PolicyError(f"{status.party}: this identity may not receive the result of job {job_id}")
            return json.loads(status.result_json)
        if state in TERMINAL_NAMES:
            raise error_from(status.error)
        raise SmpcError(f"job {job_id} is still {state} at {status.party}")

    def run(self, analysis: str, params: Mapping[str, object] | None = None, on_event=None, **kw) -> dict:
        """Submit and wait: the result dict."""
        return self.wait(self.submit(analysis, params, **kw), on_event=on_event)

    def analyses(self) -> jobs_pb2.ListAnalysesResponse:
        return self._call("ListAnalyses", jobs_pb2.ListAnalysesRequest())

    def info(self) -> jobs_pb2.ServerInfoResponse:
        return self._call("ServerInfo", jobs_pb2.ServerInfoRequest())

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """SERVING / NOT_SERVING / UNKNOWN from the standard health service."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address, plaintext=not self.signs) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


# what gRPC's details say when the mutual TLS handshake fails: our side rejected the party's
# certificate, or (TLS 1.3, "Socket closed") the party rejected ours and dropped the connection
# -- which a party going away mid-call also looks like, so that hint is hedged
_TLS_FAILURE = ("handshake failed", "certificate_verify_failed", "certificate verify failed", "ssl_error",
                "tlsv1 alert", "sslv3 alert", "bad certificate", "unknown ca")
_CLOSED = ("socket closed",)
TLS_HINT = ("check that --ca is the consortium CA and --cert/--key were issued by it "
            "(and that --server-name, if given, is this party's name)")


def _tls_hint(details: str) -> str | None:
    text = details.lower()
    if "hostname verification" in text:
        return ("the TLS handshake failed: the party's certificate is not for the identity pinned by "
                "--server-name (or, without it, not for the address in --to)")
    if any(m in text for m in _TLS_FAILURE):
        return f"the TLS handshake failed: {TLS_HINT}"
    if any(m in text for m in _CLOSED):
        return f"the party closed the connection; if it is running, it refused this client's certificate: {TLS_HINT}"
    return None


PLAINTEXT_HINT = ("this client speaks plaintext (--insecure-dev-plaintext) and sends no certificate; a party "
                  "that serves mutual TLS drops such a connection: use --ca, --cert and --key instead, unless "
                  "the party runs with --insecure-dev-plaintext too")


def _plaintext_hint(details: str) -> str | None:
    """What a plaintext client's failed connection most likely means: a TLS party (which
    drops the connection, or answers with TLS bytes the client cannot read)."""
    text = details.lower()
    if any(m in text for m in (*_TLS_FAILURE, *_CLOSED, "connection reset", "protocol", "frame")):
        return f"the party closed the connection or did not speak plaintext gRPC: {PLAINTEXT_HINT}"
    return None


def _rpc_error(exc: grpc.RpcError, address: str, plaintext: bool = False) -> SmpcError:
    """The smpc exception for a failed call. ``plaintext``: the client sent no certificate,
    so a failed connection is never blamed on one."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    hint = None
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = _plaintext_hint(details or "") if plaintext else _tls_hint(details or "")
    if hint:
        return PartyUnavailable(f"{address} is unavailable: {hint} (UNAVAILABLE: {details})", peer=address)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.PolicyError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return SmpcError(details)
    if code in (grpc.StatusCode.INVALID_ARGUMENT,):
        return errors.InputError(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.ProtocolTimeout(f"{address}: no answer in time ({details})", peer=address)
    name = code.name if code is not None else "error"
    return PartyUnavailable(f"{address} is unavailable ({name}: {details})", peer=address)
