"""One writer per audit log, on real `smpc party serve` processes: a second instance of a
party, started while the first serves or while it is still shutting down, refuses to start
and leaves the log intact; the first keeps serving and writing it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service_harness import LOAN_PARAMS, Cluster, free_ports, wait_for

from smpc.service.audit import verify
from smpc.service.states import STATE_NAMES

LOCKED = "is writing the audit log"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, certs_by_cli=False)
    c.start()
    yield c
    codes = c.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def second_instance(cluster, config):
    return subprocess.Popen([sys.executable, "-m", "smpc.cli", "party", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cluster.env(), cwd=cluster.root,
                            text=True)


def refused(proc) -> str:
    """The second instance's output once it exited; it must exit by itself, non-zero."""
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        raise AssertionError(f"a second instance kept running next to the first:\n{out}") from None
    assert proc.returncode != 0, out
    return out


def run_job(cluster, job_id):
    with cluster.client("bank_a") as client:
        job = client.submit("default_rate_overall", LOAN_PARAMS, job_id=job_id)
        client.wait(job, timeout=120)
        return STATE_NAMES[client.get(job).state]


@pytest.mark.parametrize("port", ["same", "another"])
def test_a_second_instance_is_refused_while_the_first_serves(cluster, port):
    """With the same configuration, or one that listens elsewhere but names the same log."""
    log = cluster.audit_path("bank_b")
    config = cluster.configs["bank_b"]
    if port == "another":
        text = config.read_text()
        listen = f'listen = "127.0.0.1:{cluster.ports["bank_b"]}"'
        assert listen in text
        config = config.with_name("bank_b_second.toml")
        config.write_text(text.replace(listen, f'listen = "127.0.0.1:{free_ports(1)[0]}"'))
    first = cluster.procs["bank_b"]
    out = refused(second_instance(cluster, config))
    assert "AuditError" in out and f"another instance (pid {first.pid}) {LOCKED} {log}" in out, out
    assert first.poll() is None  # the first one serves on, and writes the log alone
    assert run_job(cluster, f"after-second-{port}") == "succeeded"
    assert verify(log).ok, verify(log)
    assert [r["event"] for r in cluster.audit("bank_b")].count("service_started") == 1


def listening(cluster, bank) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex(("127.0.0.1", cluster.ports[bank])) == 0


def test_a_restart_while_the_old_instance_is_still_stopping_is_refused(cluster):
    """SIGTERM, and a new instance while the old one has let its port go but has not yet
    closed its log (it is frozen there with SIGSTOP; a health Watch stream holds its gRPC
    shutdown open for the grace period, so the moment lasts): the new one must refuse, not
    write the log the old one is about to close."""
    log = cluster.audit_path("bank_b")
    old = cluster.procs.pop("bank_b")
    frozen = False
    try:
        with cluster.client("bank_b") as client:
            watch = health_pb2_grpc.HealthStub(client.channel).Watch(health_pb2.HealthCheckRequest(service=""),
                                                                     timeout=120)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            old.terminate()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING  # it is shutting down
            wait_for(lambda: not listening(cluster, "bank_b"), 30, "bank_b to let its port go")
            old.send_signal(signal.SIGSTOP)
            frozen = True
            assert old.poll() is None and "service_stopped" not in [r["event"] for r in cluster.audit("bank_b")]
            out = refused(second_instance(cluster, cluster.configs["bank_b"]))
            assert "AuditError" in out and f"another instance (pid {old.pid}) {LOCKED} {log}" in out, out
    finally:
        if frozen:
            old.send_signal(signal.SIGCONT)
    assert old.wait(timeout=60) == 0
    assert verify(log).ok, verify(log)
    assert [r["event"] for r in cluster.audit("bank_b")][-1] == "service_stopped"
    cluster.start("bank_b")  # and a clean restart works
    assert run_job(cluster, "after-restart") == "succeeded"
    assert verify(log).ok, verify(log)
