"""The gRPC transport in one process: three small TLS servers route Exchange streams to
``GrpcTransport`` objects, so frames, chunking, timeouts, aborts, disconnects and malformed
frames are checked without the party service."""

from __future__ import annotations

import threading
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import pandas as pd
import pytest
import torch

from smpc import analyses
from smpc.errors import PartyUnavailable, ProtocolError, ProtocolTimeout
from smpc.service.pki import init_certs
from smpc.simulation import run_parties, simulate
from smpc.transport.grpc import (
    CHUNK_BYTES,
    MAX_DIMS,
    PAYLOAD_ALIGN,
    FrameAssembler,
    FrameError,
    GrpcTransport,
    add_peer_servicer,
    deserialize_frame,
    encode_frames,
    encode_wire,
    peer_identity,
    secure_channel,
    server_credentials,
    server_options,
)
from smpc.v1 import peer_pb2, peer_pb2_grpc

NAMES = ["bank_a", "bank_b", "bank_c"]
GERMAN = Path(__file__).resolve().parents[1] / "examples" / "data" / "german_credit.csv"


class Router(peer_pb2_grpc.PartyPeerServicer):
    """The Exchange half of a party service: hand each stream to the job's transport."""

    def __init__(self, name: str):
        self.name = name
        self.transports: dict[str, GrpcTransport] = {}
        self.ready = threading.Condition()

    def Exchange(self, request_iterator, context):  # noqa: N802
        caller = peer_identity(context)
        hello, _ = next(request_iterator)
        if hello.party != caller:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "HELLO does not match the certificate")
        with self.ready:
            self.ready.wait_for(lambda: hello.job_id in self.transports, timeout=10)
            transport = self.transports.get(hello.job_id)
        if transport is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
        return transport.accept(NAMES.index(caller), request_iterator, context)

    def add(self, transport: GrpcTransport) -> None:
        with self.ready:
            self.transports[transport.job_id] = transport
            self.ready.notify_all()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    certs = tmp_path_factory.mktemp("pki")
    init_certs(NAMES, certs)
    pem = {n: tuple((certs / f"{n}.{ext}").read_bytes() for ext in ("pem", "key")) for n in NAMES}
    ca = (certs / "ca.pem").read_bytes()
    servers, routers, ports = [], {}, {}
    for name in NAMES:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=server_options())
        router = Router(name)
        add_peer_servicer(router, server)
        ports[name] = server.add_secure_port("127.0.0.1:0", server_credentials(ca, *pem[name]))
        server.start()
        servers.append(server)
        routers[name] = router
    channels = {
        (a, b): secure_channel(f"127.0.0.1:{ports[b]}", ca, *pem[a], identity=b) for a in NAMES for b in NAMES if a != b
    }

    class Net:
        pass

    n = Net()
    n.routers, n.channels, n.ports, n.ca, n.pem = routers, channels, ports, ca, pem
    yield n
    for ch in channels.values():
        ch.close()
    for s in servers:
        s.stop(0)


def connect(net, job_id=None, **kw) -> list[GrpcTransport]:
    """Transports of one job for the three parties, streams dialled lower rank -> higher."""
    job_id = job_id or uuid.uuid4().hex
    transports = [GrpcTransport(r, 3, job_id, NAMES, **kw) for r in range(3)]
    for r, t in enumerate(transports):
        net.routers[NAMES[r]].add(t)
    for r, t in enumerate(transports):
        for peer in range(r + 1, 3):
            t.dial(peer, net.channels[(NAMES[r], NAMES[peer])])
    return transports


def test_analysis_over_grpc_matches_simulate(net):
    frame = pd.read_csv(GERMAN)
    tables = [frame.iloc[i::3] for i in range(3)]
    analysis = analyses.get("default_rate_overall")
    params = analysis.parse_params({"label": "creditability", "positive": "bad", "amount": "credit_amount",
                                    "min_cell_size": 10})

    def job(ctx, table):
        return analysis.fn(ctx, table, [0, 1, 2], **params), ctx.comm_stats()

    transports = connect(net)
    try:  # the same runner as simulate's, over gRPC transports
        results = run_parties(job, 3, transports.__getitem__, {r: {"table": tables[r]} for r in range(3)}, timeout=20,
                              party_names=NAMES)
    finally:
        for t in transports:
            t.close()
    sim = simulate(job, inputs={r: {"table": tables[r]} for r in range(3)}, party_names=NAMES)
    for (got, got_stats), (want, want_stats) in zip(results, sim, strict=True):
        assert got == want
        assert got_stats["bytes_sent"] == want_stats["bytes_sent"] and got_stats["rounds"] == want_stats["rounds"]
    assert all(t.threads_alive() == 0 for t in transports)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int32, torch.float64, torch.float32, torch.bool,
                                   torch.int8, torch.int16])
def test_tensors_of_every_dtype_and_shape_arrive_intact(net, dtype):
    a, b, c = connect(net)
    shapes = [(), (0,), (5,), (3, 4), (2, 0, 3), (2, 3, 1, 2)]
    sent = []
    for i, shape in enumerate(shapes):
        x = (torch.arange(max(1, torch.Size(shape).numel())) * 37 - 50)[: torch.Size(shape).numel()].reshape(shape)
        x = x.to(dtype)
        sent.append(x.clone())
        a.send(1, f"t{i}", x)
        if x.numel():
            x.zero_()  # the sender may reuse its buffer at once
    for i, want in enumerate(sent):
        got = b.recv(0, f"t{i}", timeout=10)
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
    for t in (a, b, c):
        t.close()


def test_large_tensors_are_chunked_and_reassembled(net):
    a, b, c = connect(net, chunk_bytes=1 << 20)
    x = torch.randint(-(2**62), 2**62, (2, 600_000), dtype=torch.int64)  # 9.6 MB: 10 chunks
    frames = encode_frames("j", "big", 0, x, chunk_bytes=1 << 20)
    assert len(frames) == 10 and all(len(f.payload) <= 1 << 20 for f in frames)
    b.send(2, "big", x)
    c.send(1, "back", x[1])
    assert torch.equal(c.recv(1, "big", timeout=20), x)
    assert torch.equal(b.recv(2, "back", timeout=20), x[1])
    non_contiguous = x.t()[::3]
    a.send(2, "strided", non_contiguous)
    assert torch.equal(c.recv(0, "strided", timeout=20), non_contiguous)
    for t in (a, b, c):
        t.close()


def test_receive_timeout_raises_protocol_timeout_naming_the_peer(net):
    a, b, c = connect(net)
    with pytest.raises(ProtocolTimeout, match="bank_c") as info:
        a.recv(2, "never", timeout=0.2)
    assert info.value.peer == "bank_c"
    with pytest.raises(ProtocolError, match="expected step 'x' from bank_a, got 'y'"):
        a.send(1, "y", torch.zeros(1))
        b.recv(0, "x", timeout=10)
    for t in (a, b, c):
        t.close()


def test_abort_reaches_every_peer_naming_the_party(net):
    a, b, c = connect(net)
    b.abort("InputError: bank_b, column 'x' is missing", error_type="InputError")
    for t, peer in ((a, 1), (c, 1)):
        with pytest.raises(PartyUnavailable, match="bank_b aborted the job") as info:
            t.recv(peer, "step", timeout=10)
        assert info.value.peer == "bank_b" and info.value.remote_error_type == "InputError"
    with pytest.raises(PartyUnavailable, match="aborted here"):
        b.recv(0, "step", timeout=10)  # the aborting party's own receive wakes up too
    for t in (a, b, c):
        t.close()
    assert all(t.threads_alive() == 0 for t in (a, b, c))


def test_a_vanished_peer_raises_party_unavailable_on_both_ends(net):
    a, b, c = connect(net)
    a.send(1, "hello", torch.ones(2))
    assert torch.equal(b.recv(0, "hello", timeout=10), torch.ones(2))
    a._links[1].call.cancel()  # bank_a's stream to bank_b dies, as in a crash
    with pytest.raises(PartyUnavailable, match="bank_a") as info:
        b.recv(0, "next", timeout=10)
    assert info.value.peer == "bank_a"
    with pytest.raises(PartyUnavailable, match="bank_b"):
        a.recv(1, "next", timeout=10)
    for t in (a, b, c):
        t.close()
    assert all(t.threads_alive() == 0 for t in (a, b, c))


def _raw_stream(net, job_id, frames):
    """bank_a's certificate, raw frames to bank_b's Exchange; the status the stream ends with."""
    ch = net.channels[("bank_a", "bank_b")]
    call = peer_pb2_grpc.PartyPeerStub(ch).Exchange(iter(frames), timeout=20)
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return call.code(), call.details()


@pytest.mark.parametrize("bad", ["seq", "total", "dtype", "job", "dims", "kind"])
def test_a_malformed_frame_closes_the_stream_with_an_error(net, bad):
    job_id = uuid.uuid4().hex
    b = GrpcTransport(1, 3, job_id, NAMES)
    net.routers["bank_b"].add(b)
    good = encode_frames(job_id, "step#0", 0, torch.arange(4))[0]
    frame = peer_pb2.Frame()
    frame.CopyFrom(good)
    if bad == "seq":
        frame.seq = 5
    elif bad == "total":
        frame.total_bytes = 31
    elif bad == "dtype":
        frame.dtype = 99
    elif bad == "job":
        frame.job_id = "another-job"
    elif bad == "dims":
        del frame.shape[:]
        frame.shape.extend([1] * (MAX_DIMS + 1))
        frame.total_bytes = 8
    elif bad == "kind":
        frame.kind = peer_pb2.Frame.HELLO
    hello = peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id=job_id, party="bank_a")
    code, details = _raw_stream(net, job_id, [hello, frame])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed frame from bank_a" in details
    with pytest.raises(ProtocolError, match="malformed frame from bank_a"):
        b.recv(0, "step#0", timeout=10)
    b.close()
    assert b.threads_alive() == 0


def test_frame_assembler_checks_chunks():
    x = torch.arange(10, dtype=torch.int64)
    frames = encode_frames("j", "s", 0, x, chunk_bytes=16)
    assert len(frames) == 5
    asm = FrameAssembler("j")
    for f in frames[:-1]:
        assert asm.add(f) is None
    tag, got = asm.add(frames[-1])
    assert tag == "s" and torch.equal(got, x)
    asm = FrameAssembler("j")
    asm.add(frames[0])
    with pytest.raises(FrameError, match="chunk 2 arrived where chunk 1 was due"):
        asm.add(frames[2])
    asm = FrameAssembler("j")
    asm.add(frames[0])
    changed = peer_pb2.Frame()
    changed.CopyFrom(frames[1])
    changed.tag = "other"
    with pytest.raises(FrameError, match="changes the message header"):
        asm.add(changed)
    huge = peer_pb2.Frame()
    huge.CopyFrom(frames[0])
    del huge.shape[:]
    huge.shape.extend([2**40, 2**40])
    with pytest.raises(FrameError, match="exceeds the limit"):
        FrameAssembler("j").add(huge)
    over = peer_pb2.Frame()
    over.CopyFrom(frames[0])
    over.payload = bytes(200)
    with pytest.raises(FrameError, match="more than its 80 bytes"):
        FrameAssembler("j").add(over)


@pytest.mark.parametrize("n", [0, 3, 10_000, 1_000_000])
def test_wire_encoding_is_the_protobuf_frame_and_splits_without_copies(n):
    x = torch.arange(n, dtype=torch.int64) * 7919
    wires = encode_wire("job", "step#3", 5, x, chunk_bytes=1 << 20)
    frames = encode_frames("job", "step#3", 5, x, chunk_bytes=1 << 20)
    assert len(wires) == len(frames)
    asm = FrameAssembler("job")
    asm.next_seq = 5
    for wire, frame in zip(wires, frames, strict=True):
        parsed = peer_pb2.Frame.FromString(wire)  # plain protobuf, readable by any implementation
        parsed.ClearField("pad")
        assert parsed == frame
        header, payload = deserialize_frame(wire)
        assert header.payload == b"" and header.pad == b"" and bytes(payload) == frame.payload
        if len(frame.payload) > 64 * 1024:  # large payloads start aligned within their frame
            assert wire.index(frame.payload[:64]) % PAYLOAD_ALIGN == 0
        done = asm.add(header, payload)
    assert done is not None and torch.equal(done[1], x)


def _within(tensor: torch.Tensor, data: bytes) -> bool:
    start = torch.frombuffer(data, dtype=torch.uint8).data_ptr()
    return start <= tensor.data_ptr() < start + len(data)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64, torch.bool, torch.int16])
def test_a_message_in_one_frame_becomes_a_tensor_over_the_received_bytes(dtype):
    x = (torch.arange(300_000) * 7919).to(dtype).reshape(3, -1)
    (wire,) = encode_wire("job", "s", 0, x)
    header, payload = deserialize_frame(wire)
    tag, got = FrameAssembler("job").add(header, payload)
    assert tag == "s" and torch.equal(got, x) and got.data_ptr() % 16 == 0
    assert _within(got, wire)  # no copy: the tensor's memory is the received frame's
    got.zero_()  # a normal, writable tensor (nothing else holds that frame)
    assert not got.any()


def test_a_misaligned_payload_is_copied_not_used_in_place():
    x = torch.arange(20_000, dtype=torch.int64)
    frame = encode_frames("job", "s", 0, x)[0]
    raw = bytes(3) + frame.payload
    frame.ClearField("payload")
    _, got = FrameAssembler("job").add(frame, memoryview(raw)[3:])
    assert torch.equal(got, x) and not _within(got, raw) and got.data_ptr() % 8 == 0


def test_a_16mb_message_travels_as_one_frame(net):
    assert CHUNK_BYTES >= 16_000_000
    a, b, c = connect(net)
    x = torch.randint(-(2**62), 2**62, (1_000_000, 2), dtype=torch.int64)  # a 1e6-element ring128 share
    assert len(encode_wire("j", "t", 0, x)) == 1
    a.send(2, "big", x)
    y = x.clone()
    x.zero_()  # the sender may reuse its buffer at once
    got = c.recv(0, "big", timeout=30)
    assert torch.equal(got, y)
    got += 1  # received tensors are writable
    for t in (a, b, c):
        t.close()


def test_wire_decoding_refuses_truncated_bytes():
    wire = encode_wire("job", "t", 0, torch.arange(20_000, dtype=torch.int64))[0]
    with pytest.raises(ValueError, match="past the end"):
        deserialize_frame(wire[:-1])
    with pytest.raises(ValueError):
        deserialize_frame(b"\xff" * 70_000)


@pytest.mark.parametrize("sizes", [(3, 5), (0, 40_000, 7), (300_000, 300_000)])
def test_a_list_of_tensors_is_one_message_of_their_concatenation(sizes):
    parts = [torch.arange(n, dtype=torch.int64) * (i + 3) for i, n in enumerate(sizes)]
    parts[-1] = parts[-1].reshape(-1, 1)  # any shape: the message is flat
    want = torch.cat([p.reshape(-1) for p in parts])
    for chunk_bytes in (1 << 26, 1 << 20):  # one frame, or concatenated and chunked
        wires = encode_wire("job", "s", 0, parts, chunk_bytes=chunk_bytes)
        asm = FrameAssembler("job")
        for wire in wires:
            done = asm.add(*deserialize_frame(wire))
        assert done[0] == "s" and torch.equal(done[1], want)


def test_a_list_message_travels_between_parties(net):
    a, b, c = connect(net)
    parts = [torch.arange(10, dtype=torch.int64), torch.full((2, 3), -5, dtype=torch.int64)]
    a.send(1, "parts", parts)
    parts[0].zero_()  # the sender may reuse its buffers at once
    assert torch.equal(b.recv(0, "parts", timeout=30), torch.cat([torch.arange(10), torch.full((6,), -5)]))
    with pytest.raises(ValueError, match="share a dtype"):
        a.send(1, "mixed", [torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int32)])
    for t in (a, b, c):
        t.close()


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\xff" * 70_000])
def test_bytes_that_are_not_a_frame_close_the_stream_once_with_an_error(net, garbage):
    """Bytes the frame parser refuses (small: protobuf's, large: the split parser's) reach the
    reader as a malformed message: the stream ends INVALID_ARGUMENT naming the sender, and the
    receiver's next receive fails the same way (not gRPC's own INTERNAL, which left the call
    open on the server)."""
    job_id = uuid.uuid4().hex
    b = GrpcTransport(1, 3, job_id, NAMES)
    net.routers["bank_b"].add(b)
    hello = peer_pb2.Frame(kind=peer_pb2.Frame.HELLO, job_id=job_id, party="bank_a").SerializeToString()
    call = net.channels[("bank_a", "bank_b")].stream_stream(
        "/smpc.v1.PartyPeer/Exchange", request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.RpcError) as ended:
        list(call(iter([hello, garbage]), timeout=20))
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed frame from bank_a: bytes that are not a frame" in ended.value.details()
    with pytest.raises(ProtocolError, match="malformed frame from bank_a"):
        b.recv(0, "step#0", timeout=10)
    b.close()
    assert b.threads_alive() == 0
