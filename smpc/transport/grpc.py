"""gRPC transport: the parties of a job are separate processes, one bidirectional stream per pair.

For one job, the party of lower rank dials each party of higher rank and opens
``smpc.v1.PartyPeer/Exchange``; the dialed party's service hands the incoming stream to its
``GrpcTransport`` (``accept``). Both directions of the pair then share that stream. Channels
are mutually authenticated TLS (``secure_channel`` / ``server_credentials``): a party's
identity is its certificate (``peer_certificate`` hands it to the service), and the dialer
pins the certificate name it expects.

Frames (``smpc/v1/peer.proto``) carry job id, step tag, sequence number, dtype, shape and the
raw little-endian payload bytes, in chunks of at most ``CHUNK_BYTES``. The sender copies a
tensor once (into the serialized frame); a message in one frame becomes a tensor over the
received bytes without a copy (its payload is padded to an aligned offset for that). The receiver checks
every header field; a malformed frame closes that stream with an error (``ProtocolError``
here, ``INVALID_ARGUMENT`` to the peer). A receive that waits longer than its timeout raises
``ProtocolTimeout`` naming the peer; a peer that aborts, disconnects or dies raises
``PartyUnavailable`` naming the peer.

Only this module and the party service (``smpc.service``) import grpc.
"""

from __future__ import annotations

import ipaddress
import math
import queue
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence

import grpc
import numpy as np
import torch

from smpc.errors import PartyUnavailable, ProtocolError, ProtocolTimeout, SmpcError
from smpc.transport.base import Transport, payload_parts
from smpc.v1 import peer_pb2, peer_pb2_grpc

CHUNK_BYTES = 64 * 1024 * 1024
"""Payload bytes per frame; a larger tensor travels as several frames. Large, so that the
messages of 1e6-element protocols (8 MB ring64, 16 MB ring128) travel as one frame each,
which the receiver uses in place (``FrameAssembler``). Measured on 16 MB messages between
two processes: receiver CPU 2.5 ms/MB with 4 MiB chunks copied into a buffer, 1.9 ms/MB as
one frame used in place; the rest is gRPC's own copies and TLS."""

MAX_FRAME_BYTES = CHUNK_BYTES + 64 * 1024
"""gRPC's send/receive limit per message on every party channel and server (a chunk plus
headroom for the header); a bigger frame is refused by gRPC before it is parsed."""

MAX_TENSOR_BYTES = 4 * 1024**3
"""Largest tensor a peer may announce; a larger ``total_bytes`` is a malformed frame."""

ABORT_LINGER_S = 1.0
"""How long ``close`` after an abort waits for the peers to end their streams before it
cancels them. A live peer ends its stream within milliseconds of the ABORT frame; one that
hangs (stopped, or its machine frozen) never does, and waiting a step timeout for it would
double the time a job takes to fail."""
ABORT_GRACE_S = 0.5
"""How long a receive that timed out still waits for another peer's ABORT naming the root
cause before it blames the silent peer (at most an eighth of the step timeout)."""


MAX_DIMS = 16
MAX_TAG_CHARS = 256

_DTYPES: dict[torch.dtype, tuple[int, str]] = {
    torch.int64: (peer_pb2.DTYPE_INT64, "<i8"),
    torch.uint8: (peer_pb2.DTYPE_UINT8, "u1"),
    torch.int32: (peer_pb2.DTYPE_INT32, "<i4"),
    torch.float64: (peer_pb2.DTYPE_FLOAT64, "<f8"),
    torch.float32: (peer_pb2.DTYPE_FLOAT32, "<f4"),
    torch.bool: (peer_pb2.DTYPE_BOOL, "?"),
    torch.int8: (peer_pb2.DTYPE_INT8, "i1"),
    torch.int16: (peer_pb2.DTYPE_INT16, "<i2"),
}
_WIRE_DTYPES = {code: np.dtype(np_code) for code, np_code in _DTYPES.values()}
_TORCH_DTYPES = {code: dtype for dtype, (code, _) in _DTYPES.items()}
_LITTLE = sys.byteorder == "little"

# A received frame is an immutable ``bytes`` that only this module holds; a large payload
# becomes a tensor over it in place (``FrameAssembler``). torch warns once per process that
# such a buffer is read-only: spend that one warning here, silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.frombuffer(b"\0", dtype=torch.uint8)


def channel_options(max_frame_bytes: int = MAX_FRAME_BYTES) -> list[tuple[str, int]]:
    """gRPC options every party channel uses: message limits, keepalive, and a reconnect
    backoff capped at 2 s. gRPC's default grows to 120 s, and while it runs every call fails
    at once with UNAVAILABLE: a party restarted after a minute's outage would stay
    unreachable from its peers for up to two more."""
    return [
        ("grpc.max_send_message_length", max_frame_bytes),
        ("grpc.max_receive_message_length", max_frame_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


def server_options(max_frame_bytes: int = MAX_FRAME_BYTES) -> list[tuple[str, int]]:
    """gRPC options of a party server. ``so_reuseport`` is off so that a second process
    can never silently share a party's port."""
    return [
        ("grpc.max_send_message_length", max_frame_bytes),
        ("grpc.max_receive_message_length", max_frame_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def secure_channel(address: str, ca: bytes, cert: bytes, key: bytes, identity: str | None = None,
                   max_frame_bytes: int = MAX_FRAME_BYTES) -> grpc.Channel:
    """A mutually authenticated TLS channel to ``address``.

    ``identity`` pins the server certificate: it must carry that name (the peer's configured
    certificate identity) as a subject alternative name, whatever address it is reached at.
    """
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    options = channel_options(max_frame_bytes)
    if identity:
        options.append(("grpc.ssl_target_name_override", identity))
    return grpc.secure_channel(address, creds, options=options)


def server_credentials(ca: bytes, cert: bytes, key: bytes) -> grpc.ServerCredentials:
    """TLS credentials of a party server that requires and verifies a client certificate."""
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` names this machine only (127.0.0.0/8, ::1, localhost): where a
    plaintext development channel may go."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The compute party calling, by the ``smpc://party/NAME`` URI of its TLS certificate;
    None for a client certificate or none. (The party service checks more: key usage,
    revocation, pinning -- ``smpc.service.identity``.)"""
    uris = [u.decode(errors="replace") for u in context.auth_context().get("peer_uri") or []]
    names = [u.removeprefix("smpc://party/") for u in uris if u.startswith("smpc://party/")]
    return names[0] if len(uris) == 1 and len(names) == 1 else None


def peer_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The caller's certificate (PEM) on a mutual TLS call, as the handshake verified it
    against the CA; None without one. Who it names, and in which role, is for the service to
    read (``smpc.service.identity``): its common name alone proves nothing about the role."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return pems[0] if pems else None


class FrameError(ProtocolError):
    """A frame that breaks the wire contract (bad header, size, order or job id)."""


def encode_frames(job_id: str, tag: str, seq: int, tensor: torch.Tensor,
                  chunk_bytes: int = CHUNK_BYTES) -> list[peer_pb2.Frame]:
    """The DATA frames of one message: a copy of ``tensor`` as little-endian bytes, chunked."""
    code, raw = _wire_bytes(tensor)
    total = raw.size
    chunks = max(1, math.ceil(total / chunk_bytes))
    shape = list(tensor.shape)
    frames = []
    for i in range(chunks):
        frames.append(
            peer_pb2.Frame(
                kind=peer_pb2.Frame.DATA, job_id=job_id, tag=tag, seq=seq, dtype=code, shape=shape,
                total_bytes=total, chunk=i, chunks=chunks,
                payload=raw[i * chunk_bytes:(i + 1) * chunk_bytes].tobytes(),
            )
        )
    return frames


_PAYLOAD_KEY = bytes([(10 << 3) | 2])  # field 10 (payload), wire type 2 (length-delimited)
_PAD_KEY = bytes([(15 << 3) | 2])  # field 15 (pad), length-delimited
_SMALL_FRAME = 64 * 1024

PAYLOAD_ALIGN = 16
"""Large payloads start at a multiple of this many bytes into their serialized frame."""


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint in a frame")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _host_array(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's elements as a flat numpy array over the same memory where possible (a
    contiguous CPU tensor: the common case, without the cost of detach/cpu/contiguous)."""
    try:
        return (tensor if tensor.is_contiguous() else tensor.contiguous()).numpy().reshape(-1)
    except (RuntimeError, TypeError):  # requires grad, or not on the CPU
        return tensor.detach().cpu().contiguous().numpy().reshape(-1)


def _wire_bytes(tensor: torch.Tensor) -> tuple[int, np.ndarray]:
    """(dtype code, the tensor's elements as little-endian bytes): a uint8 view of its memory
    where possible (a contiguous CPU tensor on a little-endian host)."""
    try:
        code, np_code = _DTYPES[tensor.dtype]
    except KeyError:
        raise SmpcError(f"the gRPC transport cannot send tensors of dtype {tensor.dtype}") from None
    array = _host_array(tensor)
    if not _LITTLE and array.dtype.itemsize > 1:
        array = array.astype(np.dtype(np_code))
    return code, array.view(np.uint8)


def encode_wire(job_id: str, tag: str, seq: int, tensor: torch.Tensor | Sequence[torch.Tensor],
                chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """The serialized DATA frames of one message, each built with a single copy of the
    tensor's bytes (a list of tensors: one flat message, the parts joined straight into it):
    the header fields, then the payload field appended (valid protobuf; the same bytes
    ``encode_frames(...)[i].SerializeToString()`` would give, field order and the ``pad``
    field aside).

    A large chunk gets a ``pad`` field that puts its payload at a multiple of
    ``PAYLOAD_ALIGN`` bytes from the start of the frame, so that the receiver can use the
    received frame as the tensor's memory (``FrameAssembler``) without copying it."""
    parts = payload_parts(tensor)
    if len(parts) > 1 and sum(t.numel() * t.element_size() for t in parts) > chunk_bytes:
        parts = [torch.cat([t.reshape(-1) for t in parts])]  # chunked below: rare, one copy more
    if len(parts) > 1:  # one frame that joins the parts: the only copy of their bytes
        wired = [_wire_bytes(t) for t in parts]
        code, pieces = wired[0][0], [raw for _, raw in wired]
        return [_data_frame(job_id, tag, seq, code, [sum(t.numel() for t in parts)], 0, 1, pieces)]
    code, raw = _wire_bytes(parts[0])
    chunks = max(1, math.ceil(raw.size / chunk_bytes))
    shape = list(parts[0].shape)
    return [
        _data_frame(job_id, tag, seq, code, shape, i, chunks, [raw[i * chunk_bytes:(i + 1) * chunk_bytes]], raw.size)
        for i in range(chunks)
    ]


def _data_frame(job_id: str, tag: str, seq: int, code: int, shape: list[int], chunk: int, chunks: int,
                pieces: list[np.ndarray], total: int | None = None) -> bytes:
    """One serialized DATA frame whose payload is the concatenation of ``pieces``."""
    size = sum(piece.size for piece in pieces)
    header = peer_pb2.Frame(
        kind=peer_pb2.Frame.DATA, job_id=job_id, tag=tag, seq=seq, dtype=code, shape=shape,
        total_bytes=size if total is None else total, chunk=chunk, chunks=chunks,
    ).SerializeToString()
    if not size:
        return header
    length = _varint_bytes(size)
    if size > _SMALL_FRAME:
        # pad field: key, length (one byte), filler; sized so the payload lands aligned
        gap = -(len(header) + 2 + len(_PAYLOAD_KEY) + len(length)) % PAYLOAD_ALIGN
        header += _PAD_KEY + bytes((gap,)) + bytes(gap)
    return b"".join((header, _PAYLOAD_KEY, length, *pieces))


def serialize_frame(message) -> bytes:
    """gRPC serializer of the Exchange stream: pre-encoded frames pass through."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def deserialize_frame(data: bytes) -> tuple[peer_pb2.Frame, memoryview | bytes]:
    """gRPC deserializer of the Exchange stream: (the frame without its payload, the payload).

    Large frames are split without copying the payload (a memoryview into ``data``); the
    header is parsed by protobuf. Raises ``ValueError`` on bytes that are not a frame, which
    gRPC turns into an error status on that stream."""
    if len(data) <= _SMALL_FRAME:
        frame = peer_pb2.Frame.FromString(data)
        payload = frame.payload
        frame.ClearField("payload")
        return frame, payload
    view = memoryview(data)
    parts, payload, i, n = [], b"", 0, len(data)
    while i < n:
        key, j = _read_varint(data, i)
        wire = key & 7
        if wire == 0:
            _, k = _read_varint(data, j)
        elif wire == 2:
            length, j = _read_varint(data, j)
            k = j + length
            if k > n:
                raise ValueError("a frame field runs past the end of the message")
            if key >> 3 == 10:
                payload = view[j:k]
                i = k
                continue
            if key >> 3 == 15:  # pad: nothing to keep
                i = k
                continue
        elif wire == 1:
            k = j + 8
        elif wire == 5:
            k = j + 4
        else:
            raise ValueError(f"wire type {wire} in a frame")
        if k > n:
            raise ValueError("a frame field runs past the end of the message")
        parts.append(data[i:k])
        i = k
    return peer_pb2.Frame.FromString(b"".join(parts)), payload


class MalformedMessage:
    """A streamed request message whose bytes did not parse, handed to the handler in its
    place (``lenient``): the handler ends the call with its own error status."""

    def __init__(self, error: Exception):
        self.error = error

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"[:200]


def lenient(deserializer):
    """A request deserializer that never raises: bytes that do not parse become a
    ``MalformedMessage`` for the handler to refuse.

    gRPC Python answers a streamed request message that fails to deserialize with INTERNAL
    itself, and then, when the handler's response stream ends, sends a second status on the
    same call. That second batch never completes, so the call is never released, and the
    server's shutdown waits out its whole grace for it. Every stream-request method of a
    party server therefore parses through this and aborts the call once, from the handler."""

    def parse(data: bytes):
        try:
            return data if deserializer is None else deserializer(data)
        except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the handler refuses it
            return MalformedMessage(exc)

    return parse


def add_peer_servicer(servicer: peer_pb2_grpc.PartyPeerServicer, server: grpc.Server) -> None:
    """Register the peer service like the generated ``add_PartyPeerServicer_to_server``, but
    with the Exchange stream on ``serialize_frame``/``lenient(deserialize_frame)``: the
    handler gets (frame, payload) pairs (a ``MalformedMessage`` for bytes that are not a
    frame) and may yield pre-encoded frames."""
    m = peer_pb2
    handlers = {
        "Prepare": grpc.unary_unary_rpc_method_handler(
            servicer.Prepare, request_deserializer=m.PrepareRequest.FromString,
            response_serializer=m.PrepareResponse.SerializeToString),
        "Start": grpc.unary_unary_rpc_method_handler(
            servicer.Start, request_deserializer=m.StartRequest.FromString,
            response_serializer=m.PeerAck.SerializeToString),
        "Cancel": grpc.unary_unary_rpc_method_handler(
            servicer.Cancel, request_deserializer=m.PeerCancelRequest.FromString,
            response_serializer=m.PeerAck.SerializeToString),
        "Exchange": grpc.stream_stream_rpc_method_handler(
            servicer.Exchange, request_deserializer=lenient(deserialize_frame), response_serializer=serialize_frame),
        "RecordHead": grpc.unary_unary_rpc_method_handler(
            servicer.RecordHead, request_deserializer=m.AuditHead.FromString,
            response_serializer=m.PeerAck.SerializeToString),
    }
    name = peer_pb2.DESCRIPTOR.services_by_name["PartyPeer"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def exchange_method(channel: grpc.Channel):
    """The client side of the Exchange stream on ``channel``, with the same (de)serializers."""
    return channel.stream_stream(
        "/smpc.v1.PartyPeer/Exchange", request_serializer=serialize_frame, response_deserializer=deserialize_frame,
        _registered_method=True,
    )


class FrameAssembler:
    """Checks incoming DATA frames of one direction of one stream and reassembles messages.

    A message in one chunk whose payload arrives as a view into the received frame
    (``deserialize_frame``), aligned for its dtype, becomes a tensor over that frame's memory
    without a copy; otherwise the chunks are copied once into a fresh tensor."""

    def __init__(self, job_id: str, max_tensor_bytes: int = MAX_TENSOR_BYTES):
        self.job_id = job_id
        self.max_tensor_bytes = max_tensor_bytes
        self.next_seq = 0
        self._head: peer_pb2.Frame | None = None
        self._shape: tuple[int, ...] = ()
        self._buf: np.ndarray | None = None  # uint8 view of the message being assembled
        self._filled = 0
        self._next_chunk = 0

    def add(self, frame: peer_pb2.Frame, payload=None) -> tuple[str, torch.Tensor] | None:
        """Feed one frame (its payload given apart, or in the frame); return (tag, tensor)
        when it completes a message."""
        if frame.kind != peer_pb2.Frame.DATA:
            raise FrameError(f"expected a DATA frame, got kind {frame.kind}")
        if frame.job_id != self.job_id:
            raise FrameError(f"frame for job '{frame.job_id[:64]}' on the stream of job '{self.job_id}'")
        if self._head is None:
            self._start(frame)
        else:
            head = self._head
            if (frame.tag, frame.seq, frame.dtype, list(frame.shape), frame.total_bytes, frame.chunks) != (
                head.tag, head.seq, head.dtype, list(head.shape), head.total_bytes, head.chunks
            ):
                raise FrameError(f"chunk {frame.chunk} of message {head.seq} changes the message header")
        if frame.chunk != self._next_chunk:
            raise FrameError(f"chunk {frame.chunk} arrived where chunk {self._next_chunk} was due")
        if payload is None:
            payload = frame.payload  # each access copies: take it once
        size = len(payload)
        head = self._head
        if self._filled + size > head.total_bytes:
            raise FrameError(f"message {head.seq} carries more than its {head.total_bytes} bytes")
        if head.chunks == 1:
            if size != head.total_bytes:
                raise FrameError(f"message {head.seq} ended after {size} of its {head.total_bytes} bytes")
            self._done()
            return head.tag, _tensor_from(payload, head.dtype, self._shape)
        if size:
            self._buf[self._filled:self._filled + size] = np.frombuffer(payload, dtype=np.uint8)
        self._filled += size
        self._next_chunk += 1
        if self._next_chunk < head.chunks:
            return None
        if self._filled != head.total_bytes:
            raise FrameError(f"message {head.seq} ended after {self._filled} of its {head.total_bytes} bytes")
        buf = self._buf
        self._done()
        return head.tag, _tensor_from(buf, head.dtype, self._shape, owned=True)

    def _done(self) -> None:
        self._head = self._buf = None
        self._filled = self._next_chunk = 0
        self.next_seq += 1

    def _start(self, frame: peer_pb2.Frame) -> None:
        if frame.seq != self.next_seq:
            raise FrameError(f"message {frame.seq} arrived where message {self.next_seq} was due")
        if not frame.tag or len(frame.tag) > MAX_TAG_CHARS:
            raise FrameError("a DATA frame needs a step tag of at most 256 characters")
        dtype = _WIRE_DTYPES.get(frame.dtype)
        if dtype is None:
            raise FrameError(f"unknown dtype {frame.dtype}")
        shape = tuple(frame.shape)
        if len(shape) > MAX_DIMS:
            raise FrameError(f"{len(shape)} dimensions (at most {MAX_DIMS})")
        expected = dtype.itemsize
        for d in shape:
            expected *= d
            if expected > self.max_tensor_bytes:
                break
        if expected > self.max_tensor_bytes:
            raise FrameError(f"a message of {expected} bytes exceeds the limit of {self.max_tensor_bytes}")
        if frame.total_bytes != expected:
            raise FrameError(
                f"total_bytes {frame.total_bytes} does not match dtype and shape {list(shape)} ({expected})"
            )
        if frame.chunks < 1 or frame.chunks > max(1, frame.total_bytes):
            raise FrameError(f"{frame.chunks} chunks for {frame.total_bytes} bytes")
        self._head = frame
        self._shape = shape
        # several chunks: one uninitialised buffer (no zero fill), each chunk copied in once
        self._buf = None if frame.chunks == 1 else torch.empty(frame.total_bytes, dtype=torch.uint8).numpy()


def _tensor_from(data, code: int, shape: tuple[int, ...], owned: bool = False) -> torch.Tensor:
    """The tensor of a complete message from its payload bytes: ``owned`` (a buffer this
    module allocated), a memoryview into the received frame (a large frame: used in place
    when its address suits the dtype, as nothing else holds that frame), or bytes (copied)."""
    dtype = _WIRE_DTYPES[code]
    if not len(data):
        return torch.from_numpy(np.empty(shape, dtype=dtype.newbyteorder("="))).clone()
    if not _LITTLE and dtype.itemsize > 1:
        return torch.from_numpy(np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape))
    if owned:
        return torch.from_numpy(data).view(_TORCH_DTYPES[code]).reshape(shape)
    if isinstance(data, memoryview):
        tensor = torch.frombuffer(data, dtype=torch.uint8)
        if tensor.data_ptr() % dtype.itemsize == 0:
            return tensor.view(_TORCH_DTYPES[code]).reshape(shape)
    return torch.from_numpy(np.frombuffer(bytearray(data), dtype=dtype).reshape(shape))


class _End:
    """Sentinel: stop sending on this stream (normal close)."""


class _Reject:
    """Sentinel for the server side: end the stream with an error status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code = code
        self.details = details


class _Failure:
    """Sentinel in an incoming queue: every later receive from this peer raises ``error``."""

    def __init__(self, error: Exception):
        self.error = error


_END = _End()


class _Link:
    """This party's end of the stream with one peer, for one job."""

    def __init__(self, peer: int, name: str):
        self.peer = peer
        self.name = name
        self.outgoing: queue.SimpleQueue = queue.SimpleQueue()
        self.incoming: queue.SimpleQueue = queue.SimpleQueue()
        self.send_seq = 0
        self.connected = False
        self.failure: Exception | None = None
        self.call = None  # the client-side call object when this party dialed
        self.context = None  # the server-side context when the peer dialed
        self.reader: threading.Thread | None = None

    def fail(self, error: Exception) -> None:
        if self.failure is None:
            self.failure = error
        self.incoming.put(_Failure(error))


class GrpcTransport(Transport):
    """The ``Transport`` of one job between separate processes, over gRPC streams.

    Create it, connect every peer (``dial`` for peers of higher rank, ``accept`` from the
    service's Exchange handler for peers of lower rank), build a ``Context`` on it, run the
    job, then ``close()`` (or ``abort()`` on failure). Sends before a stream is connected are
    queued; receives wait for it up to their timeout.
    """

    def __init__(self, rank: int, world_size: int, job_id: str, party_names: list[str],
                 chunk_bytes: int = CHUNK_BYTES, max_tensor_bytes: int = MAX_TENSOR_BYTES):
        if len(party_names) != world_size:
            raise SmpcError(f"{len(party_names)} party names for a world of {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.job_id = job_id
        self.party_names = list(party_names)
        self.me = self.party_names[rank]
        self.chunk_bytes = chunk_bytes
        self.max_tensor_bytes = max_tensor_bytes
        self._links = {p: _Link(p, self.party_names[p]) for p in range(world_size) if p != rank}
        self._lock = threading.Lock()
        self._aborted: str | None = None
        self._closed = False

    # ----- connecting ------------------------------------------------------------------
    def dial(self, peer: int, channel: grpc.Channel, metadata: tuple = ()) -> None:
        """Open the Exchange stream to ``peer`` on ``channel`` (the service owns the channel)."""
        link = self._link(peer)
        with self._lock:
            if link.connected:
                raise SmpcError(f"{self.me}: the stream to {link.name} is already open")
            link.connected = True
        hello = peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id=self.job_id, party=self.me)

        def requests() -> Iterator[peer_pb2.Frame]:
            yield hello
            yield from self._frames_out(link)

        # wait for the connection rather than fail at once while the channel backs off from a
        # peer's restart; the receive timeouts bound the wait
        call = exchange_method(channel)(requests(), metadata=metadata, wait_for_ready=True)
        link.call = call
        call.add_callback(lambda: link.outgoing.put(_END))  # never leave the request thread blocked
        self._start_reader(link, call)

    def accept(self, peer: int, requests: Iterator, context: grpc.ServicerContext):
        """Serve the Exchange stream that ``peer`` opened (its HELLO already read and checked);
        ``requests`` yields (frame, payload) pairs (``add_peer_servicer``).

        Returns the iterator of outgoing frames for the service's handler to return.
        """
        link = self._link(peer)
        with self._lock:
            if link.connected:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{link.name} already has a stream for job {self.job_id}")
            link.connected = True
        link.context = context
        context.add_callback(lambda: link.outgoing.put(_END))
        self._start_reader(link, requests)
        return self._serve_frames(link, context)

    def _link(self, peer: int) -> _Link:
        try:
            return self._links[peer]
        except KeyError:
            raise SmpcError(f"{self.me}: rank {peer} is not a peer of this job") from None

    def _start_reader(self, link: _Link, frames) -> None:
        link.reader = threading.Thread(
            target=self._pump, args=(link, frames), daemon=True,
            name=f"smpc-link-{self.job_id[:12]}-{self.me}<-{link.name}",
        )
        link.reader.start()

    # ----- the two directions ----------------------------------------------------------
    def _frames_out(self, link: _Link) -> Iterator[peer_pb2.Frame]:
        while True:
            item = link.outgoing.get()
            if isinstance(item, (_End, _Reject)):
                return
            yield item

    def _serve_frames(self, link: _Link, context: grpc.ServicerContext) -> Iterator[peer_pb2.Frame]:
        while True:
            item = link.outgoing.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Reject):
                context.abort(item.code, item.details)
            yield item

    def _pump(self, link: _Link, frames) -> None:
        """Reader thread: frames from ``link.name`` into its incoming queue, until the stream ends."""
        assembler = FrameAssembler(self.job_id, self.max_tensor_bytes)
        try:
            for item in frames:
                if isinstance(item, MalformedMessage):
                    raise FrameError(f"bytes that are not a frame ({item})")
                frame, payload = item
                if frame.kind == peer_pb2.Frame.ABORT:
                    error = PartyUnavailable(
                        f"{self.me}: {link.name} aborted the job"
                        + (f" ({frame.error_type}: {frame.reason})" if frame.error_type else f" ({frame.reason})"),
                        peer=link.name,
                    )
                    error.peer_rank = link.peer
                    error.remote_error_type = frame.error_type
                    error.remote_reason = frame.reason
                    error.culprit = frame.culprit or link.name
                    link.fail(error)
                    return
                message = assembler.add(frame, payload)
                if message is not None:
                    link.incoming.put(message)
            self._peer_gone(link, "closed the stream")
        except FrameError as exc:
            self._reject(link, exc)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "error"
            self._peer_gone(link, f"connection lost ({name})")
        except Exception as exc:  # noqa: BLE001 - a reader thread must always report and end
            self._peer_gone(link, f"stream failed ({type(exc).__name__}: {exc})")
        finally:
            link.outgoing.put(_END)

    def _peer_gone(self, link: _Link, what: str) -> None:
        if self._closed:
            return
        error = PartyUnavailable(f"{self.me}: {link.name} is unavailable: {what} (job {self.job_id})", peer=link.name)
        error.peer_rank = link.peer
        link.fail(error)

    def _reject(self, link: _Link, exc: FrameError) -> None:
        detail = f"malformed frame from {link.name}: {exc}"
        error = ProtocolError(f"{self.me}: {detail} (job {self.job_id}); the stream was closed")
        error.peer = link.name
        link.fail(error)
        if link.call is not None:
            link.call.cancel()
        else:
            link.outgoing.put(_Reject(grpc.StatusCode.INVALID_ARGUMENT, detail))

    # ----- Transport -------------------------------------------------------------------
    def send(self, peer: int, tag: str, payload: torch.Tensor) -> None:
        link = self._link(peer)
        if self._aborted is not None:
            raise self._local_abort_error()
        if link.failure is not None:
            raise link.failure
        frames = encode_wire(self.job_id, tag, link.send_seq, payload, self.chunk_bytes)
        link.send_seq += 1
        for frame in frames:
            link.outgoing.put(frame)

    def recv(self, peer: int, tag: str, timeout: float) -> torch.Tensor:
        link = self._link(peer)
        try:
            item = link.incoming.get(timeout=max(0.0, timeout))
        except queue.Empty:
            reported = self._abort_reported(min(ABORT_GRACE_S, timeout / 8))
            if reported is not None:
                raise reported from None
            what = "message" if link.connected else "connection"
            error = ProtocolTimeout(
                f"{self.me}: no {what} from {link.name} for step '{tag}' within {timeout:g} s (job {self.job_id})",
                peer=link.name,
            )
            error.peer_rank = peer
            raise error from None
        if isinstance(item, _Failure):
            link.incoming.put(item)  # every later receive fails the same way
            raise item.error
        got_tag, tensor = item
        if got_tag != tag:
            raise ProtocolError(f"{self.me}: expected step '{tag}' from {link.name}, got '{got_tag}'")
        return tensor

    def _abort_reported(self, grace: float) -> PartyUnavailable | None:
        """A peer's ABORT that arrived, or arrives within ``grace`` seconds, on any link. A
        party stuck waiting on a peer that is itself stuck waiting on a hung third party times
        out at about the same moment as that peer; the peer's abort names the hung party, and
        reporting it rather than the silent peer blames the root cause."""
        deadline = time.monotonic() + grace
        while True:
            for link in self._links.values():
                failure = link.failure
                if getattr(failure, "remote_error_type", None) is not None:
                    return failure
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def failure(self) -> Exception | None:
        """Why this transport can carry the job no longer -- aborted here, or a peer aborted,
        went away or sent a malformed frame --, without waiting; None while it can. For a
        party whose job runs elsewhere for a while (its worker pool) and must stop at once
        when the job fails at a peer."""
        if self._aborted is not None:
            return self._local_abort_error()
        for link in self._links.values():
            if link.failure is not None:
                return link.failure
        return None

    def _local_abort_error(self) -> PartyUnavailable:
        error = PartyUnavailable(f"{self.me}: the job was aborted here ({self._aborted})", peer=self.me)
        error.peer_rank = self.rank
        return error

    def abort(self, reason: str, error_type: str = "", culprit: str = "") -> None:
        """Tell every peer that this party gave up (they raise ``PartyUnavailable`` naming it,
        carrying ``error_type``, ``reason`` and the ``culprit`` party -- this one by default, or
        the peer whose loss made it give up), wake up a local receive, and close the streams."""
        with self._lock:
            if self._aborted is not None or self._closed:
                return
            self._aborted = reason
        frame = peer_pb2.Frame(kind=peer_pb2.Frame.ABORT, job_id=self.job_id, party=self.me,
                               error_type=error_type, reason=reason[:1000], culprit=culprit or self.me)
        local = self._local_abort_error()
        for link in self._links.values():
            link.outgoing.put(frame)
            link.outgoing.put(_END)
            link.incoming.put(_Failure(local))

    def close(self, timeout: float = 5.0) -> None:
        """End every stream and wait up to ``timeout`` seconds for the peers to end theirs
        (after an abort: up to ``ABORT_LINGER_S``); streams still open after that are
        cancelled, and their reader threads get as long again to finish."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            wait = min(timeout, ABORT_LINGER_S) if self._aborted is not None else timeout
        for link in self._links.values():
            link.outgoing.put(_END)
        readers = [link for link in self._links.values() if link.reader is not None]
        deadline = time.monotonic() + wait
        for link in readers:
            link.reader.join(max(0.0, deadline - time.monotonic()))
        hung = [link for link in readers if link.reader.is_alive()]
        for link in hung:
            if link.call is not None:
                link.call.cancel()
            elif link.context is not None:
                link.context.cancel()
        deadline = time.monotonic() + wait
        for link in hung:
            link.reader.join(max(0.0, deadline - time.monotonic()))

    def threads_alive(self) -> int:
        """Reader threads of this transport that are still running."""
        return sum(1 for link in self._links.values() if link.reader is not None and link.reader.is_alive())
