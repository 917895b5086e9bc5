"""The gRPC transport between two parties over mutual TLS on loopback (the aim:
>= 500 MB/s per link with 8 MB (ring64) and 16 MB (ring128) tensors, <= 1 ms per round).

Both parties live in this process (two TLS servers, one stream), so on a small machine the
sender, the receiver and TLS share the cores; the party services run one process per party.
``extra_info`` holds MB/s (throughput) and the per-round time (latency).
"""

from __future__ import annotations

import threading
import uuid
from concurrent import futures

import grpc
import pytest
import torch

from smpc.service.pki import init_certs
from smpc.transport.grpc import (
    CHUNK_BYTES,
    GrpcTransport,
    add_peer_servicer,
    peer_identity,
    secure_channel,
    server_credentials,
    server_options,
)
from smpc.v1 import peer_pb2_grpc

NAMES = ["bank_a", "bank_b", "bank_c"]


class _Router(peer_pb2_grpc.PartyPeerServicer):
    def __init__(self):
        self.transports = {}
        self.cond = threading.Condition()

    def Exchange(self, request_iterator, context):  # noqa: N802
        caller = peer_identity(context)
        hello, _ = next(request_iterator)
        with self.cond:
            self.cond.wait_for(lambda: hello.job_id in self.transports, timeout=10)
            transport = self.transports[hello.job_id]
        return transport.accept(NAMES.index(caller), request_iterator, context)


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    """bank_a (rank 0) dials bank_b (rank 1): one stream, both directions."""
    certs = tmp_path_factory.mktemp("pki")
    init_certs(NAMES[:2], certs)
    read = {n: ((certs / f"{n}.pem").read_bytes(), (certs / f"{n}.key").read_bytes()) for n in NAMES[:2]}
    ca = (certs / "ca.pem").read_bytes()
    router = _Router()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=server_options())
    add_peer_servicer(router, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(ca, *read["bank_b"]))
    server.start()
    channel = secure_channel(f"127.0.0.1:{port}", ca, *read["bank_a"], identity="bank_b")
    job = uuid.uuid4().hex
    a = GrpcTransport(0, 3, job, NAMES)
    b = GrpcTransport(1, 3, job, NAMES)
    with router.cond:
        router.transports[job] = b
        router.cond.notify_all()
    a.dial(1, channel)
    yield a, b
    a.close()
    b.close()
    channel.close()
    server.stop(0)


@pytest.mark.parametrize("ring,elements", [(64, 1_000_000), (128, 1_000_000)], ids=["ring64-8mb", "ring128-16mb"])
def test_throughput(benchmark, link, ring, elements):
    """One direction: 8 messages of a 1e6-element share (8 MB ring64, 16 MB ring128)."""
    a, b = link
    shape = (elements,) if ring == 64 else (elements, 2)
    x = torch.randint(0, 2**62, shape, dtype=torch.int64)
    per_round = 8

    def one_way():
        for i in range(per_round):
            a.send(1, f"x{i}", x)
        for i in range(per_round):
            b.recv(0, f"x{i}", 60)

    benchmark.pedantic(one_way, rounds=5, warmup_rounds=1)
    mb = per_round * x.numel() * 8 / 1e6
    benchmark.extra_info.update(mb_per_s=round(mb / benchmark.stats.stats.median, 1), chunk_bytes=CHUNK_BYTES)


def test_throughput_both_ways_16mb(benchmark, link):
    """Both directions at once, as in a round where each party sends its share and receives
    the peer's: MB/s per direction."""
    a, b = link
    x = torch.randint(0, 2**62, (1_000_000, 2), dtype=torch.int64)  # 16 MB
    per_round = 4

    def side(peer, t):
        for i in range(per_round):
            t.send(peer, f"w{i}", x)
            t.recv(peer, f"w{i}", 60)

    def both():
        other = threading.Thread(target=side, args=(0, b))
        other.start()
        side(1, a)
        other.join()

    benchmark.pedantic(both, rounds=5, warmup_rounds=1)
    mb = per_round * x.numel() * 8 / 1e6
    benchmark.extra_info.update(mb_per_s_each_way=round(mb / benchmark.stats.stats.median, 1))


def test_small_round_latency(benchmark, link):
    a, b = link
    s = torch.zeros(2, dtype=torch.int64)
    n = 500

    def echo():
        for _ in range(n):
            b.recv(0, "s", 60)
            b.send(0, "r", s)

    def rounds():
        t = threading.Thread(target=echo)
        t.start()
        for _ in range(n):
            a.send(1, "s", s)
            a.recv(1, "r", 60)
        t.join()

    benchmark.pedantic(rounds, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(ms_per_round_trip=round(benchmark.stats.stats.median / n * 1e3, 3))
