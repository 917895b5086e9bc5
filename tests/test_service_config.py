"""Party configuration, development PKI and the CLI's start-up errors (no servers)."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from smpc import cli
from smpc.errors import SmpcError
from smpc.service.config import ConfigError, load_config
from smpc.service.pki import init_certs

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"

GOOD = """
[party]
name = "bank_a"
listen = "127.0.0.1:0"

[tls]
ca = "certs/ca.pem"
cert = "certs/bank_a.pem"
key = "certs/bank_a.key"

[compute]
ranks = ["bank_a", "bank_b", "bank_c"]

[peers.bank_b]
address = "127.0.0.1:50052"
identity = "bank_b"

[peers.bank_c]
address = "127.0.0.1:50053"

[data.loans]
path = "loans.csv"
columns = { creditability = "str", credit_amount = { type = "int", bound = 100000 } }

[policy]
allowed_analyses = ["default_rate_overall"]
allowed_recipients = ["bank_a", "bank_b", "bank_c"]
min_cell_size = 5
max_rows = 1000

[policy.allowed_columns]
default_rate_overall = ["creditability", "credit_amount"]

[audit]
path = "audit/bank_a.jsonl"

[store]
key_file = "store_key"

[timeouts]
step = 30
"""


RANKS = 'ranks = ["bank_a", "bank_b", "bank_c"]'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki") / "certs"
    init_certs(["bank_a", "bank_b", "bank_c"], out, clients=["analyst"])
    return out


@pytest.fixture
def party_dir(tmp_path, pki):
    (tmp_path / "certs").symlink_to(pki)
    (tmp_path / "loans.csv").write_text("creditability,credit_amount,extra\ngood,100,1\nbad,250,2\n")
    (tmp_path / "store_key").write_text("ab" * 32 + "\n")
    (tmp_path / "store_key").chmod(0o600)
    return tmp_path


def write(party_dir: Path, text: str) -> Path:
    path = party_dir / "party.toml"
    path.write_text(text)
    return path


def test_a_complete_config_loads(party_dir):
    config = load_config(write(party_dir, GOOD))
    assert config.name == "bank_a" and config.rank == 0 and config.ranks == ("bank_a", "bank_b", "bank_c")
    assert config.peers["bank_c"].identity == "bank_c"  # defaults to the peer's name
    assert config.data["loans"].format == "csv" and config.data["loans"].columns["credit_amount"] == "int"
    assert config.policy.min_cell_size == 5 and config.timeouts.step == 30.0 and config.timeouts.connect == 10.0
    assert config.audit_path == (party_dir / "audit" / "bank_a.jsonl").resolve()
    # no worker pool unless asked: every job one session in the party process
    assert (config.compute.workers, config.compute.engine, config.compute.listen) == (1, "process", "127.0.0.1:0")


def test_worker_pool_keys(party_dir):
    pool = load_config(write(party_dir, GOOD.replace(RANKS, RANKS + '\nworkers = 3\nlisten = "0.0.0.0:50061"\n'
                                                                  'advertise = "bank-a.example"'))).compute
    assert (pool.workers, pool.engine, pool.listen, pool.advertise) == (3, "process", "0.0.0.0:50061", "bank-a.example")
    ray = load_config(write(party_dir, GOOD.replace(RANKS, RANKS + '\nworkers = 2\nengine = "ray"\n'
                                                                 'address = "auto"'))).compute
    # actors run on the cluster's nodes: they listen everywhere and announce their own node
    assert (ray.engine, ray.address, ray.listen, ray.advertise) == ("ray", "auto", "0.0.0.0:0", "")


@pytest.mark.parametrize(("edit", "key"), [
    (lambda t: t.replace('name = "bank_a"\n', ""), "party.name"),
    (lambda t: t.replace('listen = "127.0.0.1:0"', 'listen = "nowhere"'), "party.listen"),
    (lambda t: t.replace('ca = "certs/ca.pem"', 'ca = "certs/missing.pem"'), "tls.ca"),
    (lambda t: t.replace('[peers.bank_c]\naddress = "127.0.0.1:50053"\n', ""), "peers.bank_c"),
    (lambda t: t.replace('address = "127.0.0.1:50052"', "address = 50052"), "peers.bank_b.address"),
    (lambda t: t.replace('ranks = ["bank_a", "bank_b", "bank_c"]', 'ranks = ["bank_a", "bank_b"]'), "compute.ranks"),
    (lambda t: t.replace('type = "int"', 'type = "money"'), "data.loans.columns.credit_amount.type"),
    (lambda t: t.replace('creditability = "str"', 'missing_col = "str"'), "data.loans.columns.missing_col"),
    (lambda t: t.replace('path = "loans.csv"', 'path = "nothing.csv"'), "data.loans.path"),
    (lambda t: t.replace('allowed_analyses = ["default_rate_overall"]', 'allowed_analyses = ["no_such"]'),
     "policy.allowed_analyses"),
    (lambda t: t.replace("min_cell_size = 5", "min_cell_size = 0"), "policy.min_cell_size"),
    (lambda t: t.replace("max_rows = 1000", 'max_rows = "many"'), "policy.max_rows"),
    (lambda t: t + '\n[policy.dp]\nbudget_per_source = { cards = 1.0 }\n', "policy.dp.budget_per_source.cards"),
    (lambda t: t + '\n[policy.dp]\nbudget_per_source = { loans = -1 }\n', "policy.dp.budget_per_source.loans"),
    (lambda t: t + '\n[policy.dp]\nbudget_per_source = { loans = 1 }\nperiod = "week"\n', "policy.dp.period"),
    (lambda t: t + '\n[policy.dp]\nrequired = true\n', "policy.dp.required"),
    (lambda t: t + '\n[policy.dp]\nbudget = 1.0\n', "policy.dp.budget"),
    (lambda t: t.replace("step = 30", "step = -1"), "timeouts.step"),
    (lambda t: t.replace("step = 30", "stepp = 30"), "timeouts.stepp"),
    (lambda t: t.replace('[audit]\npath = "audit/bank_a.jsonl"\n', ""), "audit"),
    (lambda t: t + '\n[analyses]\nmodules = ["no_such_module_here"]\n', "analyses.modules"),
    (lambda t: t.replace('cert = "certs/bank_a.pem"', 'cert = "certs/bank_b.pem"'), "tls.key"),
    (lambda t: t.replace("[party]", "[party\n"), "not valid TOML"),
    (lambda t: t.replace(RANKS, RANKS + "\nworkers = 0"), "compute.workers"),
    (lambda t: t.replace(RANKS, RANKS + "\nworkers = 65"), "compute.workers"),
    (lambda t: t.replace(RANKS, RANKS + '\nengine = "dask"'), "compute.engine"),
    (lambda t: t.replace(RANKS, RANKS + '\nengine = "ray"'), "compute.address"),
    (lambda t: t.replace(RANKS, RANKS + '\naddress = "ray://head:10001"'), "compute.address"),
    (lambda t: t.replace(RANKS, RANKS + '\nlisten = "nowhere"'), "compute.listen"),
    (lambda t: t.replace(RANKS, RANKS + '\nworkers = 4\nlisten = "0.0.0.0:65534"'), "compute.listen"),
    (lambda t: t.replace(RANKS, RANKS + '\nworkers = 2\nlisten = "0.0.0.0:50061"'), "compute.advertise"),
])
def test_bad_or_incomplete_config_names_the_key(party_dir, edit, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(party_dir, edit(GOOD)))


def test_certificate_identity_must_be_the_party_name(party_dir):
    text = GOOD.replace('cert = "certs/bank_a.pem"', 'cert = "certs/bank_b.pem"').replace(
        'key = "certs/bank_a.key"', 'key = "certs/bank_b.key"')
    with pytest.raises(ConfigError, match="tls.cert.*'bank_b'.*'bank_a'"):
        load_config(write(party_dir, text))


def test_example_configs_for_three_banks_are_valid():
    configs = [load_config(SERVICES / f"{b}.toml", check_files=False) for b in ("bank_a", "bank_b", "bank_c")]
    assert [c.rank for c in configs] == [0, 1, 2]
    for c in configs:
        assert c.ranks == configs[0].ranks
        for name, peer in c.peers.items():
            other = next(o for o in configs if o.name == name)
            assert peer.address == other.listen and peer.identity == other.name
        assert c.data["loans"].path.is_file()


def test_certs_init_makes_a_ca_and_party_certificates(tmp_path):
    out = tmp_path / "pki"
    assert cli.main(["certs", "init", "--parties", "bank_a,bank_b,bank_c", "--clients", "analyst", "--out",
                     str(out)]) == 0
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    from cryptography.x509.oid import ExtendedKeyUsageOID

    for name in ("bank_a", "bank_b", "bank_c", "analyst"):
        cert = x509.load_pem_x509_certificate((out / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if name == "analyst":  # a client: it cannot pass for a party at a loopback address
            assert not san.get_values_for_type(x509.DNSName) and not san.get_values_for_type(x509.IPAddress)
            assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["smpc://client/analyst"]
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH}
        else:
            names = san.get_values_for_type(x509.DNSName)
            assert name in names and "localhost" in names
            assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
            assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"smpc://party/{name}"]
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        assert stat.S_IMODE((out / f"{name}.key").stat().st_mode) == 0o600
    # the CA's key stays out of the folder the parties' files are in
    assert not (out / "ca.key").exists() and stat.S_IMODE((out / "ca" / "ca.key").stat().st_mode) == 0o600
    # never silently replaces a PKI
    assert cli.main(["certs", "init", "--parties", "bank_a", "--out", str(out)]) == cli.EXIT_FAILED
    with pytest.raises(SmpcError, match="not a valid party name"):
        init_certs(["bank a"], tmp_path / "other")


def test_party_serve_with_a_bad_config_fails_at_start_naming_the_key(party_dir, capsys):
    path = write(party_dir, GOOD.replace("step = 30", "step = 'soon'"))
    assert cli.main(["party", "serve", "--config", str(path)]) == cli.EXIT_USAGE
    assert "timeouts.step" in capsys.readouterr().err


def test_cli_has_room_for_more_command_groups():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"party", "certs", "job", "audit"} <= set(sub.choices)


# ----- a party's decision on a job (policy.decide), without servers --------------------------
def _request(**kw):
    from smpc.service.policy import JobRequest

    base = {"job_id": "j1", "analysis": "default_rate_overall",
            "params": {"label": "creditability", "positive": "bad", "amount": "credit_amount"},
            "source": "loans", "requester": "bank_b", "recipients": ["bank_b"], "coordinator": "bank_b",
            "parties": ["bank_a", "bank_b", "bank_c"]}
    base.update(kw)
    return JobRequest(**base)


@pytest.mark.parametrize(("change", "rule", "error_type"), [
    ({"analysis": "quantiles"}, "policy.allowed_analyses", "PolicyError"),
    ({"requester": "analyst", "recipients": ["analyst"]}, "policy.allowed_recipients", "PolicyError"),
    ({"recipients": ["bank_b", "outsider"]}, "policy.allowed_recipients", "PolicyError"),
    ({"params": {"label": "creditability", "amount": "extra"}}, "policy.allowed_columns.default_rate_overall",
     "PolicyError"),
    ({"params": {"label": "creditability"}}, "data.schema", "InputError"),  # labels, not 0/1 flags
    ({"params": {"label": "creditability", "colour": "red"}}, "params", "InputError"),
    ({"source": "cards"}, "policy.allowed_sources", "PolicyError"),
    ({"parties": ["bank_b", "bank_a", "bank_c"]}, "compute.ranks", "PolicyError"),
])
def test_policy_refusals_name_the_party_and_rule(party_dir, change, rule, error_type):
    from smpc.service.policy import decide

    config = load_config(write(party_dir, GOOD))
    decision = decide(config, _request(**change))
    assert not decision.accepted and decision.rule == rule and decision.error_type == error_type
    assert decision.message.startswith("bank_a refuses job j1:") and f"(rule {rule})" in decision.message


def test_policy_accepts_and_raises_the_minimum_cell_size(party_dir):
    from smpc.service.policy import decide

    config = load_config(write(party_dir, GOOD))
    decision = decide(config, _request())
    assert decision.accepted and decision.rows == 2 and decision.columns == ["creditability", "credit_amount"]
    assert decision.min_cell_size == 5 and decision.params["min_cell_size"] == 5  # the policy's, not 1
    assert list(decision.table.columns) == ["creditability", "credit_amount"]
    text = GOOD.replace("max_rows = 1000", "max_rows = 1")
    refused = decide(load_config(write(party_dir, text)), _request())
    assert refused.rule == "policy.max_rows" and "2" not in refused.message.split("maximum")[0]  # no row count


def test_parquet_sources_and_declared_types(party_dir):
    from smpc.errors import InputError
    from smpc.service.config import DataSource
    from smpc.service.policy import load_table

    frame = pd.DataFrame({"amount": [1, 2, 3], "flag": ["true", "false", "TRUE"], "note": ["a", "b", "c"]})
    frame.to_parquet(party_dir / "t.parquet")
    source = DataSource("t", party_dir / "t.parquet", "parquet", {"amount": "int", "flag": "bool", "note": "str"})
    table = load_table(source, ["amount", "flag"], "bank_a")
    assert table["amount"].tolist() == [1, 2, 3] and table["flag"].tolist() == [1, 0, 1]
    bad = pd.DataFrame({"amount": ["1", "x", "3"]})
    bad.to_parquet(party_dir / "bad.parquet")
    source = DataSource("b", party_dir / "bad.parquet", "parquet", {"amount": "float"})
    with pytest.raises(InputError, match=r"bank_a, data source 'b', column 'amount' \(declared float\): "
                                         r"row 2 is not a number$"):
        load_table(source, ["amount"], "bank_a")
    (party_dir / "frac.csv").write_text("amount\n1\n2.5\n")
    source = DataSource("f", party_dir / "frac.csv", "csv", {"amount": "int"})
    with pytest.raises(InputError, match=r"\(declared int\): row 2 is not a whole number$"):
        load_table(source, ["amount"], "bank_a")


# ----- typos are named, not reported as the key they hide ------------------------------------
@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('name = "bank_a"', 'nmae = "bank_a"'), "unknown key 'party.nmae' (a typo of 'name'?)"),
    (lambda t: t.replace("[policy]\n", "[polcy]\n"), "unknown key 'polcy' (a typo of 'policy'?)"),
    (lambda t: t.replace('address = "127.0.0.1:50052"', 'adress = "127.0.0.1:50052"'),
     "unknown key 'peers.bank_b.adress' (a typo of 'address'?)"),
    (lambda t: t.replace('path = "loans.csv"', 'paht = "loans.csv"'), "unknown key 'data.loans.paht'"),
    (lambda t: t.replace('ca = "certs/ca.pem"', 'ca_file = "certs/ca.pem"'), "unknown key 'tls.ca_file'"),
])
def test_a_misspelt_required_key_is_named_before_the_missing_one(party_dir, edit, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(party_dir, edit(GOOD)))
    assert message in str(info.value) and "missing key" not in str(info.value)


def test_a_policy_column_no_data_source_declares_is_refused_at_load(party_dir):
    text = GOOD.replace('default_rate_overall = ["creditability", "credit_amount"]',
                        'default_rate_overall = ["creditability", "credit_amont"]')
    with pytest.raises(ConfigError, match=r"key 'policy\.allowed_columns\.default_rate_overall': column "
                                          r"'credit_amont' is not declared by any data source.*'credit_amount'"):
        load_config(write(party_dir, text), check_files=False)
    # a column declared by another source than the first is allowed
    text = GOOD.replace("\n[policy]", '\n[data.cards]\npath = "loans.csv"\ncolumns = { extra = "int" }\n\n[policy]')
    sources = '[policy.allowed_sources]\ndefault_rate_overall = ["loans", "cards"]\n\n'
    text = text.replace("[policy.allowed_columns]", sources + "[policy.allowed_columns]")
    text = text.replace('default_rate_overall = ["creditability", "credit_amount"]',
                        'default_rate_overall = ["creditability", "credit_amount", "extra"]')
    assert load_config(write(party_dir, text)).policy.allowed_columns["default_rate_overall"][-1] == "extra"


def test_job_submit_help_names_the_default_source():
    import argparse

    parser = cli.build_parser()
    job = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["job"]
    submit = next(a for a in job._actions if isinstance(a, argparse._SubParsersAction)).choices["submit"]
    text = next(a.help for a in submit._actions if a.dest == "source")
    assert "first [data.*]" in text and "only one" not in text


def test_a_client_certificate_cannot_serve_as_a_party(tmp_path):
    """A process holding an analyst's certificate that binds a party's loopback port is
    refused by a job client even without --server-name; a party's certificate is accepted."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    from smpc.errors import PartyUnavailable
    from smpc.service.client import JobClient
    from smpc.transport.grpc import server_credentials

    out = tmp_path / "pki"
    init_certs(["bank_a", "bank_b", "bank_c"], out, clients=["analyst"])
    ca = (out / "ca.pem").read_bytes()
    for holder, accepted in (("analyst", False), ("bank_b", True)):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(
            ca, (out / f"{holder}.pem").read_bytes(), (out / f"{holder}.key").read_bytes()))
        server.start()
        try:
            with JobClient(f"127.0.0.1:{port}", ca=out / "ca.pem", cert=out / "bank_a.pem", key=out / "bank_a.key",
                           timeout=10) as client:
                if accepted:
                    assert client.health(timeout=10) == "SERVING"
                else:
                    with pytest.raises(PartyUnavailable, match="TLS handshake failed"):
                        client.health(timeout=10)
        finally:
            server.stop(0)


# ----- what a bank declares about its columns, and the parameters that come from it ------------
DECLARED = GOOD.replace(
    'columns = { creditability = "str", credit_amount = { type = "int", bound = 100000 } }',
    'columns = { creditability = { type = "str", categories = ["bad", "good"] }, '
    'credit_amount = { type = "int", bound = 1000, total_bound = 5000 }, extra = { type = "float", bound = 10, '
    'decimals = 1 } }')


def test_column_declarations_load_with_their_settings(party_dir):
    from smpc.service.config import Column

    source = load_config(write(party_dir, DECLARED)).data["loans"]
    assert source.columns == {"creditability": "str", "credit_amount": "int", "extra": "float"}
    assert source.column("credit_amount") == Column("int", bound=1000.0, decimals=0, total_bound=5000.0)
    assert source.column("extra") == Column("float", bound=10.0, decimals=1)
    assert source.column("creditability").categories == ("bad", "good")
    plain = load_config(write(party_dir, GOOD)).data["loans"]
    assert plain.column("creditability") == Column("str")  # the plain form declares the type only
    least = load_config(write(party_dir, DECLARED.replace("bound = 10,", "bound = 10, min = -2.5,").replace(
        "total_bound = 5000", "total_bound = 5000, nonnegative = true"))).data["loans"]
    assert least.column("extra").min == -2.5
    assert least.column("credit_amount").min == 0.0  # nonnegative = true is min = 0
    assert source.column("extra").min is None


@pytest.mark.parametrize(("before", "after", "message"), [
    ('creditability = { type = "str", categories = ["bad", "good"] }',
     'creditability = { type = "str", bound = 3 }', "key 'data.loans.columns.creditability.bound': only an int"),
    ("decimals = 1 }", "decimals = 7 }", "key 'data.loans.columns.extra.decimals' must be in 0..6"),
    ("bound = 10, decimals = 1", "bound = 1e15, decimals = 2", r"key 'data.loans.columns.extra.bound'.*2\^53"),
    ("total_bound = 5000", "total_bound = 500", r"key 'data.loans.columns.credit_amount.total_bound' \(500\) is below"),
    ("bound = 10, decimals = 1", "bound = -1, decimals = 1", "key 'data.loans.columns.extra.bound' must be positive"),
    ('type = "float", bound = 10', 'type = "float", categories = ["a"], bound = 10',
     "key 'data.loans.columns.extra.categories': only a str or int column"),
    ('categories = ["bad", "good"]', 'categories = ["bad", "bad"]', "names a key twice"),
    ('categories = ["bad", "good"]', "categories = []", "must be a non-empty list of strings"),
    ("total_bound = 5000", "totl_bound = 5000",
     r"unknown key 'data.loans.columns.credit_amount.totl_bound' \(a typo of 'total_bound'\?\)"),
    ('{ type = "int", bound = 1000', "{ bound = 1000", "missing key 'data.loans.columns.credit_amount.type'"),
    ('categories = ["bad", "good"]', 'categories = ["bad", "good"], min = 0',
     "key 'data.loans.columns.creditability.min': only an int"),
    ('categories = ["bad", "good"]', 'categories = ["bad", "good"], nonnegative = true',
     "key 'data.loans.columns.creditability.nonnegative': only an int"),
    ("bound = 10, decimals = 1", "bound = 10, decimals = 1, min = 11",
     r"key 'data.loans.columns.extra.min' \(11\) is above the column's bound \(10\)"),
    ("bound = 10, decimals = 1", 'bound = 10, decimals = 1, min = "0"',
     "key 'data.loans.columns.extra.min' must be a number"),
    ("bound = 10, decimals = 1", "bound = 10, decimals = 1, nonnegative = 1",
     "key 'data.loans.columns.extra.nonnegative' must be true or false"),
    ("bound = 10, decimals = 1", "bound = 10, decimals = 1, nonnegative = true, min = 2",
     "key 'data.loans.columns.extra.nonnegative': declare either min or nonnegative"),
])
def test_a_bad_column_declaration_is_refused_naming_the_key(party_dir, before, after, message):
    assert before in DECLARED
    with pytest.raises(ConfigError, match=message):
        load_config(write(party_dir, DECLARED.replace(before, after)))


def test_one_data_source_serves_every_allowed_analysis_and_several_need_allowed_sources(party_dir):
    config = load_config(write(party_dir, GOOD))
    assert config.policy.allowed_sources == {"default_rate_overall": ("loans",)}
    two = GOOD.replace("\n[policy]", '\n[data.cards]\npath = "loans.csv"\ncolumns = { extra = "int" }\n\n[policy]')
    with pytest.raises(ConfigError, match=r"missing key 'policy\.allowed_sources\.default_rate_overall': with "
                                          r"several data sources \(loans, cards\)"):
        load_config(write(party_dir, two))
    listed = two.replace("[policy.allowed_columns]",
                         '[policy.allowed_sources]\ndefault_rate_overall = ["cards"]\n\n[policy.allowed_columns]')
    assert load_config(write(party_dir, listed)).policy.allowed_sources == {"default_rate_overall": ("cards",)}
    with pytest.raises(ConfigError, match=r"key 'policy\.allowed_sources\.default_rate_overall': no data source "
                                          r"'card'"):
        load_config(write(party_dir, listed.replace('["cards"]', '["card"]')))
    with pytest.raises(ConfigError, match=r"key 'policy\.allowed_sources\.no_such': unknown analysis"):
        load_config(write(party_dir, listed.replace('default_rate_overall = ["cards"]', 'no_such = ["cards"]\n'
                                                    'default_rate_overall = ["cards"]')))


def test_disclosure_terms_of_the_policy(party_dir):
    config = load_config(write(party_dir, GOOD))
    assert config.policy.min_contributors == 3 and config.policy.max_dominance == 100.0  # defaults
    text = GOOD.replace("max_rows = 1000", "max_rows = 1000\nmin_contributors = 2\nmax_dominance = 60")
    config = load_config(write(party_dir, text))
    assert config.policy.min_contributors == 2 and config.policy.max_dominance == 60.0
    for bad, key in (("max_dominance = 150", "policy.max_dominance"), ("max_dominance = 0", "policy.max_dominance"),
                     ("min_contributors = 0", "policy.min_contributors")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(write(party_dir, GOOD.replace("max_rows = 1000", f"max_rows = 1000\n{bad}")))


def _salted(party_dir, salt: str, mode: int) -> str:
    path = party_dir / "join_salt"
    path.write_text(salt)
    path.chmod(mode)
    return GOOD + '\n[join]\nsalt_file = "join_salt"\n'


def test_the_join_salt_file_is_the_owners_only_and_long_enough(party_dir):
    salt = "a consortium secret of some length"
    config = load_config(write(party_dir, _salted(party_dir, salt + "\n", 0o600)))
    assert config.join_salt == salt and salt not in repr(config)
    with pytest.raises(ConfigError, match=r"key 'join\.salt_file': .* is readable by others \(mode 0644\)"):
        load_config(write(party_dir, _salted(party_dir, salt, 0o644)))
    with pytest.raises(ConfigError, match=r"key 'join\.salt_file': .* fewer than 16 characters"):
        load_config(write(party_dir, _salted(party_dir, "short", 0o600)))
    with pytest.raises(ConfigError, match=r"key 'join\.salt_file': file .* does not exist"):
        load_config(write(party_dir, GOOD + '\n[join]\nsalt_file = "nowhere"\n'))
    assert load_config(write(party_dir, GOOD)).join_salt is None


# ----- owner-set parameters in a party's decision ------------------------------------------------
def _decide(party_dir, text: str, **change):
    from smpc.service.policy import decide

    return decide(load_config(write(party_dir, text)), _request(**change))


@pytest.mark.parametrize("name", ["amount_bound", "amount_decimals"])
def test_a_requester_cannot_send_a_parameter_the_data_owner_sets(party_dir, name):
    params = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}
    answers = set()
    for value in ("1", "250", "1e9", "0"):  # whatever the value, and whatever the data: the same answer
        decision = _decide(party_dir, GOOD, params={**params, name: value})
        assert not decision.accepted and decision.rule == "params.owner" and not decision.detail
        answers.add(decision.message)
    assert answers == {f"bank_a refuses job j1: parameter '{name}' is set by each bank's data configuration, "
                       "not by the requester (rule params.owner)"}


def test_owner_set_parameters_come_from_the_columns_declarations(party_dir):
    decision = _decide(party_dir, DECLARED)
    assert decision.accepted
    assert decision.declared == {"amount_decimals": 0, "amount_bound": 1000.0}
    assert decision.params["amount_bound"] == 1000.0 and decision.params["amount_decimals"] == 0
    # without an amount column, no amount scale is needed
    assert _decide(party_dir, DECLARED, params={"label": "creditability", "positive": "bad"}).declared == {}
    # a column the job needs a bound of, declared without one: refused, naming the key
    refused = _decide(party_dir, DECLARED.replace("bound = 1000, total_bound = 5000", "total_bound = 5000"))
    assert refused.rule == "data.declaration"
    assert "key data.loans.columns.credit_amount.bound" in refused.message


def test_data_breaking_its_own_declaration_is_refused_without_rows_or_values(party_dir):
    (party_dir / "loans.csv").write_text("creditability,credit_amount,extra\ngood,100,1\nbad,2500,2\n")
    over = _decide(party_dir, DECLARED)  # 2500 > the declared bound 1000, in row 2
    (party_dir / "loans.csv").write_text("creditability,credit_amount,extra\ngood,x,1\nbad,250,2\n")
    not_a_number = _decide(party_dir, DECLARED)
    public = "bank_a refuses job j1: its data does not match its declared schema (rule data.schema)"
    for decision in (over, not_a_number):
        assert not decision.accepted and decision.message == public and decision.error_type == "InputError"
        assert "row" not in decision.message and "credit_amount" not in decision.message
    assert "row 2 exceeds the declared bound 1000" in over.detail
    assert "column 'credit_amount'" in not_a_number.detail and "row 1 is not a number" in not_a_number.detail
    assert over.as_audit()["detail"] == over.detail  # the party's own audit log keeps it


def test_a_join_needs_the_parties_salt_and_never_takes_one_from_the_requester(party_dir):
    text = GOOD.replace('allowed_analyses = ["default_rate_overall"]',
                        'allowed_analyses = ["default_rate_overall", "blacklist_hits"]')
    text = text.replace("[policy.allowed_columns]", '[policy.allowed_columns]\nblacklist_hits = ["creditability"]')
    job = {"analysis": "blacklist_hits", "params": {"id": "creditability", "requester": "bank_b"}}
    unsalted = _decide(party_dir, text, **job)
    assert unsalted.rule == "join.salt_file" and "key join.salt_file" in unsalted.message
    salted = _salted(party_dir, "a consortium secret of some length", 0o600).replace(GOOD, text)
    decision = _decide(party_dir, salted, **job)
    assert decision.accepted and decision.params["salt"] == "a consortium secret of some length"
    from smpc.analyses.registry import secret_fingerprint

    assert decision.salt_fingerprint == secret_fingerprint("a consortium secret of some length")
    assert decision.salt_fingerprint.startswith("hmac-sha256:") and "salt" not in decision.declared
    sent = _decide(party_dir, salted, analysis="blacklist_hits",
                   params={"id": "creditability", "requester": "bank_b", "salt": "guess"})
    assert sent.rule == "params.owner"


def test_merged_declarations_cover_every_partys_own():
    from smpc.analyses import registry
    from smpc.service.policy import decode_declared, encode_declared, merge_declared, uncovered

    rate, describe = registry.get("default_rate"), registry.get("describe")
    merged = merge_declared(rate, [{"groups": ["b", "c"]}, {"groups": ["a", "b"]}, {"groups": ["c"]}])
    assert merged == {"groups": ["a", "b", "c"]}
    assert uncovered(rate, merged, {"groups": ["a"]}) is None and uncovered(rate, merged, {"groups": ["d"]}) == "groups"
    merged = merge_declared(describe, [{"bound": 10.0, "decimals": 0}, {"bound": 1e6, "decimals": 2}])
    assert merged == {"bound": 1e6, "decimals": 2}
    assert uncovered(describe, {"bound": 10.0, "decimals": 2}, {"bound": 1e6, "decimals": 2}) == "bound"
    assert decode_declared(describe, encode_declared(merged), "bank_b") == merged
    with pytest.raises(SmpcError, match="bank_b sent 'min_cell_size', which is no owner-set parameter"):
        decode_declared(describe, {"min_cell_size": "1"}, "bank_b")


def test_a_requester_may_tighten_the_disclosure_terms_never_loosen_them(party_dir):
    import service_terms_analysis  # noqa: F401 - registers test_disclosure_terms

    text = GOOD.replace('allowed_analyses = ["default_rate_overall"]',
                        'allowed_analyses = ["default_rate_overall", "test_disclosure_terms"]')
    text = text.replace("[policy.allowed_columns]",
                        '[policy.allowed_columns]\ntest_disclosure_terms = ["creditability"]')
    text = text.replace("max_rows = 1000", "max_rows = 1000\nmin_contributors = 2\nmax_dominance = 80")
    job = {"analysis": "test_disclosure_terms", "params": {"label": "creditability"}}
    decision = _decide(party_dir, text, **job)
    assert decision.accepted and (decision.min_contributors, decision.max_dominance) == (2, 80.0)
    assert decision.params["min_contributors"] == 2 and decision.params["max_dominance"] == 80.0
    stricter = _decide(party_dir, text, analysis=job["analysis"],
                       params={"label": "creditability", "min_contributors": "3", "max_dominance": "50"})
    assert stricter.params["min_contributors"] == 3 and stricter.params["max_dominance"] == 50.0
    for looser, rule in (({"min_contributors": "1"}, "policy.min_contributors"),
                         ({"max_dominance": "90"}, "policy.max_dominance"),
                         ({"min_cell_size": "4"}, "policy.min_cell_size")):
        refused = _decide(party_dir, text, analysis=job["analysis"], params={"label": "creditability", **looser})
        assert not refused.accepted and refused.rule == rule and not refused.detail, refused
        assert f"parameter '{next(iter(looser))}' may " in refused.message
    # the policy's own minimum cell size, asked for or left out, and a larger one are accepted
    for asked, cell in (({}, 5), ({"min_cell_size": "5"}, 5), ({"min_cell_size": "9"}, 9)):
        decision = _decide(party_dir, text, analysis=job["analysis"], params={"label": "creditability", **asked})
        assert decision.accepted and decision.min_cell_size == cell and decision.params["min_cell_size"] == cell
    # the policy's default of 3 contributors is capped at the number of banks in the job
    capped = _decide(party_dir, text.replace("min_contributors = 2", "min_contributors = 7"), **job)
    assert capped.min_contributors == 3


@pytest.mark.parametrize(("csv", "detail"), [
    ("creditability,credit_amount,extra\ngood,100,1\nugly,250,2\n",
     "column 'creditability': row 2 holds a key outside the declared categories"),
    ("creditability,credit_amount,extra\ngood,100,1.25\nbad,250,2\n",
     "column 'extra': row 1 has more than the declared 1 decimal places"),
    ("creditability,credit_amount,extra\ngood,100,1\nbad,250,-10.5\n",
     "column 'extra': row 2 exceeds the declared bound 10"),
    ("creditability,credit_amount,extra\ngood,100,1\nbad,250,-0.5\n",
     "column 'extra': row 2 is below the declared minimum 0"),
    ("creditability,credit_amount,extra\ngood,100,0\nbad,250,-0.0\n", None),  # 0 and -0 keep to min = 0
])
def test_every_column_a_job_reads_keeps_to_its_declaration(party_dir, csv, detail):
    """Also where the analysis itself would not look (extra is read, its bound is no parameter)."""
    (party_dir / "loans.csv").write_text(csv)
    text = DECLARED.replace('default_rate_overall = ["creditability", "credit_amount"]',
                            'default_rate_overall = ["creditability", "credit_amount", "extra"]')
    text = text.replace("bound = 10,", "bound = 10, nonnegative = true,")
    decision = _decide(party_dir, text, params={"label": "creditability", "positive": "bad", "amount": "extra"})
    if detail is None:
        assert decision.accepted, decision
        return
    assert decision.rule == "data.schema" and detail in decision.detail and "row" not in decision.message


# ----- the data owner's privacy cap ([data.NAME.dp]) ----------------------------------------------
CAPPED = DECLARED.replace(
    "decimals = 1 } }", 'decimals = 1 }, customer = "str" }\ndp = { customer = "customer", rows_per_customer = 2 }')


def test_a_sources_privacy_cap_loads_and_a_bad_one_is_refused_naming_the_key(party_dir):
    (party_dir / "loans.csv").write_text("creditability,credit_amount,extra,customer\ngood,100,1,c1\n")
    source = load_config(write(party_dir, CAPPED)).data["loans"]
    assert (source.dp_customer, source.dp_rows_per_customer) == ("customer", 2)
    plain = load_config(write(party_dir, GOOD)).data["loans"]
    assert (plain.dp_customer, plain.dp_rows_per_customer) == (None, 1)  # one row per customer
    for before, after, message in (
            ('customer = "customer", ', 'customer = "client", ',
             r"key 'data\.loans\.dp\.customer': column 'client' is not declared in data\.loans\.columns"),
            ("rows_per_customer = 2", "rows_per_customer = 0",
             r"key 'data\.loans\.dp\.rows_per_customer' must be an integer >= 1"),
            ("rows_per_customer = 2", "rows_per_customer = 20000",
             r"key 'data\.loans\.dp\.rows_per_customer' must be at most 10000"),
            ("rows_per_customer = 2", "rows_per_custmer = 2",
             r"unknown key 'data\.loans\.dp\.rows_per_custmer' \(a typo of 'rows_per_customer'\?\)")):
        with pytest.raises(ConfigError, match=message):
            load_config(write(party_dir, CAPPED.replace(before, after)))


def test_the_privacy_cap_and_customer_column_come_from_the_source_never_from_the_requester(party_dir):
    (party_dir / "loans.csv").write_text("creditability,credit_amount,extra,customer\ngood,100,1,c1\nbad,250,2,c1\n")
    params = {"label": "creditability", "positive": "bad", "amount": "credit_amount", "dp_epsilon": "1.0"}
    decision = _decide(party_dir, CAPPED, params=params)
    assert decision.accepted, decision.message
    # the cap is merged with the other banks' (declared); the column stays here
    assert decision.declared["dp_rows_per_customer"] == 2 and "dp_customer" not in decision.declared
    assert decision.params["dp_customer"] == "customer" and decision.params["dp_rows_per_customer"] == 2
    assert "customer" in decision.columns  # read to cap the rows, though no policy column names it
    exact = _decide(party_dir, CAPPED, params={k: v for k, v in params.items() if k != "dp_epsilon"})
    assert exact.accepted and "dp_rows_per_customer" not in exact.declared and exact.params["dp_customer"] is None
    for key, value in (("dp_rows_per_customer", "1"), ("dp_customer", "customer")):
        sent = _decide(party_dir, CAPPED, params={**params, key: value})
        assert not sent.accepted and sent.rule == "params.owner" and sent.error_type == "PolicyError"
        assert f"parameter '{key}' is set by each bank's data configuration, not by the requester" in sent.message


def test_the_job_runs_with_the_largest_cap_and_no_customer_column_travels():
    from smpc.analyses import registry
    from smpc.service.policy import decode_declared, encode_declared, merge_declared, uncovered

    rate = registry.get("default_rate_overall")
    merged = merge_declared(rate, [{"dp_rows_per_customer": 1}, {"dp_rows_per_customer": 3}, {}])
    assert merged == {"dp_rows_per_customer": 3}
    assert uncovered(rate, merged, {"dp_rows_per_customer": 2}) is None
    assert uncovered(rate, {"dp_rows_per_customer": 1}, {"dp_rows_per_customer": 2}) == "dp_rows_per_customer"
    assert decode_declared(rate, encode_declared(merged), "bank_b") == merged
    with pytest.raises(SmpcError, match="bank_b sent 'dp_customer', which is no owner-set parameter"):
        decode_declared(rate, encode_declared({"dp_customer": "id"}), "bank_b")
