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


@pytest.mark.parametrize(("key", "address"), [("listen", "0.0.0.0:0"), ("listen", "[::]:0"),
                                              ("peer", "10.1.2.3:50052"), ("peer", "bank-b.example:50052")])
def test_plaintext_mode_refuses_anything_but_loopback(tmp_path, capsys, key, address):
    from smpc.errors import SmpcError

    cluster = Cluster(tmp_path, analysis_modules=(), extra_allowed=(), certs_by_cli=False)
    path = cluster.configs["bank_a"]
    text = path.read_text()
    if key == "listen":
        text = text.replace(f'listen = "127.0.0.1:{cluster.ports["bank_a"]}"', f'listen = "{address}"')
        named = "party.listen"
    else:
        text = text.replace(f'address = "127.0.0.1:{cluster.ports["bank_b"]}"', f'address = "{address}"')
        named = "peers.bank_b.address"
    path.write_text(text)
    with pytest.raises(SmpcError, match=f"loopback addresses only.*key {named} is"):
        PartyServer(load_config(path), insecure=True)
    assert cli.main(["party", "serve", "--config", str(path), "--insecure-dev-plaintext"]) == cli.EXIT_FAILED
    assert "loopback addresses only" in capsys.readouterr().err
    assert not cluster.audit("bank_a")  # it never started
    PartyServer(load_config(path)).stop()  # with TLS any address is the operator's choice


def test_a_plaintext_client_refuses_a_remote_party():
    from smpc.errors import SmpcError

    with pytest.raises(SmpcError, match="loopback addresses only"):
        JobClient("192.0.2.7:50051", insecure_identity="bank_a")
    JobClient("localhost:1", insecure_identity="bank_a").close()
    JobClient("[::1]:1", insecure_identity="bank_a").close()


def test_a_plaintext_client_at_a_tls_party_is_told_so_not_blamed_for_a_certificate(tmp_path):
    """The client sent no certificate, so its error says that it spoke plaintext to a party
    that serves mutual TLS, and no certificate hint."""
    from smpc.errors import PartyUnavailable

    cluster = Cluster(tmp_path, analysis_modules=(), extra_allowed=(), certs_by_cli=False)
    server = PartyServer(load_config(cluster.configs["bank_a"]))
    server.start()
    try:
        with JobClient(cluster.address("bank_a"), insecure_identity="analyst", timeout=10) as client:
            with pytest.raises(PartyUnavailable) as info:
                client.info()
    finally:
        server.stop(grace=1)
    message = str(info.value)
    assert "this client speaks plaintext (--insecure-dev-plaintext) and sends no certificate" in message, message
    assert "use --ca, --cert and --key" in message
    assert "refused this client's certificate" not in message and "--cert/--key were issued" not in message
