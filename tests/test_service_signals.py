"""A party service stops cleanly however its stop signals arrive, and whatever reaches it
while it stops.

systemd sends SIGTERM and an impatient operator adds Ctrl-C; a supervisor may repeat
SIGTERM. A handler that takes a lock deadlocks when a second signal lands inside the first
(CI caught exactly that once), so the burst below is as dense as a loop can send it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import grpc
import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster

from smpc.errors import PartyUnavailable
from smpc.service.server import STOP_GRACE_S
from smpc.transport.grpc import secure_channel


def test_a_burst_of_stop_signals_stops_the_service_once_and_cleanly(tmp_path):
    cluster = Cluster(tmp_path, certs_by_cli=False)
    cluster.start("bank_a")
    proc = cluster.procs["bank_a"]
    deadline = time.monotonic() + 3.0
    sent = 0
    try:  # a storm for the whole first part of the shutdown, not one signal per stop
        while proc.poll() is None and time.monotonic() < deadline:
            os.kill(proc.pid, signal.SIGINT if sent % 3 == 2 else signal.SIGTERM)
            sent += 1
    except ProcessLookupError:
        pass  # it exited between poll and kill
    assert cluster.stop("bank_a") == 0
    log = cluster.log("bank_a")
    assert log.count("shutting down") == 1, log
    assert "stopped in" in log, log


def test_a_job_that_arrives_while_the_service_stops_is_refused_cleanly(tmp_path):
    """PartyServer.stop ends the job manager before the gRPC server: a Submit or a peer's
    Prepare in between is answered UNAVAILABLE ("shutting down"), and no job is left behind
    half made (no audit record of it, nothing active)."""
    from smpc.service.config import load_config
    from smpc.service.server import PartyServer
    from smpc.v1 import peer_pb2, peer_pb2_grpc

    cluster = Cluster(tmp_path, certs_by_cli=False)
    server = PartyServer(load_config(cluster.configs["bank_a"]))
    server.start()
    try:
        server.manager.shutdown(timeout=1)  # what stop() does first, while the server still serves
        with cluster.client("bank_a", identity="analyst") as client:
            with pytest.raises(PartyUnavailable, match="bank_a is shutting down"):
                client.submit_status("default_rate_overall", LOAN_PARAMS, job_id="late-job")
        spec = peer_pb2.JobSpec(job_id="bank_b/late-peer-job", analysis="default_rate_overall", coordinator="bank_b",
                                requester="bank_b", recipients=["bank_b"], parties=BANKS, source="loans")
        with secure_channel(cluster.address("bank_a"), *(p.read_bytes() for p in cluster.cert_args("bank_b").values()),
                            identity="bank_a") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                peer_pb2_grpc.PartyPeerStub(channel).Prepare(peer_pb2.PrepareRequest(spec=spec), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in refused.value.details()
        assert server.manager.active_jobs() == 0
        assert server.manager.get("analyst/late-job") is None and server.manager.get("bank_b/late-peer-job") is None
    finally:
        server.stop(grace=1)
    assert not [r for r in cluster.audit("bank_a") if r.get("job_id") in ("analyst/late-job", "bank_b/late-peer-job")]


def test_a_port_in_use_is_refused_with_the_config_key_named(tmp_path):
    import socket

    from smpc.errors import SmpcError
    from smpc.service.config import load_config
    from smpc.service.server import PartyServer

    cluster = Cluster(tmp_path, certs_by_cli=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cluster.ports["bank_a"]))
        squatter.listen()
        server = PartyServer(load_config(cluster.configs["bank_a"]))
        try:
            with pytest.raises(SmpcError, match=r"bank_a: cannot listen on 127\.0\.0\.1:\d+ \(key party\.listen"):
                server.start()
        finally:
            server.server.stop(0)


def test_malformed_streamed_requests_leave_no_call_that_holds_up_the_shutdown(tmp_path):
    """A streamed request message that does not parse (reflection's, or an Exchange frame) is
    refused with INVALID_ARGUMENT, and the call ends there: SIGTERM afterwards stops the service
    well within its grace, not after waiting the grace out for a call that never finishes."""
    cluster = Cluster(tmp_path, certs_by_cli=False)
    cluster.start("bank_a")
    methods = {"analyst": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
               "bank_b": "/smpc.v1.PartyPeer/Exchange"}
    for identity, method in methods.items():
        with secure_channel(cluster.address("bank_a"), *(p.read_bytes() for p in cluster.cert_args(identity).values()),
                            identity="bank_a") as channel:
            call = channel.stream_stream(method, request_serializer=bytes, response_deserializer=bytes)
            for garbage in [b"\xff\xff\xff"] * 10 + [b"\x0a\x05ab", b"\xff" * 70_000]:
                with pytest.raises(grpc.RpcError) as refused:
                    list(call(iter([garbage]), timeout=10))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, refused.value.details())
    proc = cluster.procs.pop("bank_a")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log = cluster.log("bank_a")
        raise AssertionError(f"bank_a did not exit within its {STOP_GRACE_S} s grace:\n{log}") from None
    log = cluster.log("bank_a")
    assert code == 0 and time.monotonic() - t0 < STOP_GRACE_S, log
    assert "did not finish" not in log and "stopped in" in log, log
