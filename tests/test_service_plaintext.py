"""The development-only plaintext mode: loud, and still a working consortium (three party
servers in this process)."""

from __future__ import annotations

import pytest
from service_harness import BANKS, LOAN_PARAMS, Cluster

from smpc import analyses, cli
from smpc.service.client import JobClient
from smpc.service.config import load_config
from smpc.service.server import INSECURE_WARNING, PartyServer


def test_plaintext_flag_prints_a_loud_warning(tmp_path, capsys):
    assert cli.main(["party", "serve", "--config", str(tmp_path / "missing.toml"), "--insecure-dev-plaintext"]) == 2
    err = capsys.readouterr().err
    assert "WARNING: --insecure-dev-plaintext: NO TLS" in err and "Never use it with real data" in err
    assert INSECURE_WARNING.splitlines()[1] in err


@pytest.fixture
def plaintext_cluster(tmp_path):
    cluster = Cluster(tmp_path, analysis_modules=(), extra_allowed=(), certs_by_cli=False)
    servers = [PartyServer(load_config(cluster.configs[b]), insecure=True) for b in BANKS]
    for s in servers:
        s.start()
    yield cluster
    for s in servers:
        s.stop(grace=1)


def test_a_job_runs_in_plaintext_mode(plaintext_cluster):
    c = plaintext_cluster
    with JobClient(c.address("bank_c"), insecure_identity="bank_b") as client:
        assert client.health() == "SERVING"
        result = client.run("default_rate_overall", LOAN_PARAMS, recipients=["bank_c"])
    assert result == analyses.get("default_rate_overall").run_plaintext(c.tables, **LOAN_PARAMS, min_cell_size=10)
    # a TLS client cannot talk to a plaintext party
    with c.client("bank_c") as client, pytest.raises(Exception, match="UNAVAILABLE"):
        client.info()
    started = next(r for r in c.audit("bank_a") if r["event"] == "service_started")
    assert started["tls"] is False
