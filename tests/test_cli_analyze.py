"""`smpc analyze` as a user runs it: real files, a real subprocess, JSON shapes, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smpc.cli import main as cli_main
from smpc.context import Context
from smpc.secret import SecretTensor

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


def smpc_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smpc.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bank_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("banks")
    german = pd.read_csv(DATA / "german_credit.csv")
    taiwan = pd.read_csv(DATA / "taiwan_default_sample.csv")
    files = {}
    for i, bank in enumerate(["bank_a", "bank_b", "bank_c"]):
        files[("german", bank)] = root / f"german_{bank}.csv"
        german.iloc[i::3].to_csv(files[("german", bank)], index=False)
        files[("taiwan", bank)] = root / f"taiwan_{bank}.parquet"
        taiwan.iloc[i::3].to_parquet(files[("taiwan", bank)])
    renamed = german.iloc[::3].rename(columns={"credit_amount": "amount"})
    files["renamed"] = root / "renamed.csv"
    renamed.to_csv(files["renamed"], index=False)
    texty = german.iloc[1::3].copy()
    texty["credit_amount"] = texty["credit_amount"].astype(object)
    texty.iloc[0, texty.columns.get_loc("credit_amount")] = "lots"
    files["texty"] = root / "texty.csv"
    texty.to_csv(files["texty"], index=False)
    # 0/1 default flags; bank_b's file has one flag that is neither
    flagged = german.assign(flag=(german["creditability"] == "bad").astype(int))
    for i, bank in enumerate(["bank_a", "bank_b", "bank_c"]):
        part = flagged.iloc[i::3].copy()
        if bank == "bank_b":
            part.iloc[4, part.columns.get_loc("flag")] = 2
        files[("flags", bank)] = root / f"flags_{bank}.csv"
        part.to_csv(files[("flags", bank)], index=False)
    return files


def data_args(files, dataset):
    return [a for bank in ["bank_a", "bank_b", "bank_c"] for a in ("--data", f"{bank}={files[(dataset, bank)]}")]


def test_describe_json_shape_and_values(bank_files):
    out = smpc_cli("analyze", "describe", *data_args(bank_files, "taiwan"), "--param", "columns=LIMIT_BAL,BILL_AMT1",
                   "--json", "--check")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"analysis", "result", "leakage", "cost", "check"}
    assert doc["analysis"] == "describe"
    taiwan = pd.read_csv(DATA / "taiwan_default_sample.csv")
    for column in ("LIMIT_BAL", "BILL_AMT1"):
        for stat in ("count", "sum", "mean", "var", "std", "min", "max"):
            want = float(getattr(taiwan[column], stat)())
            assert abs(doc["result"][column][stat] - want) <= 1e-9 * abs(want)
    assert isinstance(doc["leakage"], list) and doc["leakage"]
    assert doc["cost"]["rounds"] > 0 and doc["cost"]["bytes"] > 0
    assert doc["check"]["largest_difference"] == 0


def test_default_rate_json_groups(bank_files, capsys):
    code = cli_main(["analyze", "default_rate", *data_args(bank_files, "german"), "--param", "label=creditability",
                     "--param", "positive=bad", "--param", "by=purpose", "--param", "min_cell_size=10", "--json"])
    assert code == 0
    groups = json.loads(capsys.readouterr().out)["result"]["groups"]
    german = pd.read_csv(DATA / "german_credit.csv")
    for key, series in german.groupby("purpose")["creditability"]:
        # released where each of the three banks holds at least 10 of the group's loans
        if any((german.iloc[i::3]["purpose"] == key).sum() < 10 for i in range(3)):
            assert groups[key] == {"suppressed": True}
        else:
            assert groups[key]["count"] == len(series)
            assert groups[key]["defaults"] == int((series == "bad").sum())
            assert groups[key]["rate"] == pytest.approx((series == "bad").mean(), rel=1e-12)


def test_quantiles_from_parquet_files(bank_files, capsys):
    code = cli_main(["analyze", "quantiles", *data_args(bank_files, "taiwan"), "--param", "column=LIMIT_BAL",
                     "--param", "q=0.1,0.5,0.9", "--json"])
    assert code == 0
    taiwan = pd.read_csv(DATA / "taiwan_default_sample.csv")
    got = json.loads(capsys.readouterr().out)["result"]["quantiles"]
    assert [got[k] for k in ("0.1", "0.5", "0.9")] == pytest.approx(np.quantile(taiwan["LIMIT_BAL"], [0.1, 0.5, 0.9]))


def test_explain_prints_leakage_without_data(capsys):
    assert cli_main(["analyze", "default_rate", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "Leakage:" in out and "Cost:" in out


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_column", "bank_b: column 'credit_amount' is missing"),
        ("non_numeric", "mismatched schemas: column 'credit_amount' is numeric at bank_a but text at bank_b "
                        r"\(bank_b row 1 is not a number\)"),
        ("unknown_analysis", "unknown analysis 'fraud_magic'"),
        ("unknown_param", "unknown parameter"),
        ("no_file", "bank_b: file .* does not exist"),
    ],
)
def test_bad_input_gives_one_clear_error_and_reveals_nothing(bank_files, case, expected, capsys):
    """In-process through smpc.cli.main (the same code path as the console script, without
    paying for a Python start per case)."""
    a = f"bank_a={bank_files[('german', 'bank_a')]}"
    b = {
        "missing_column": f"bank_b={bank_files['renamed']}",
        "non_numeric": f"bank_b={bank_files['texty']}",
        "no_file": "bank_b=/nonexistent/file.csv",
    }.get(case, f"bank_b={bank_files[('german', 'bank_b')]}")
    analysis = "fraud_magic" if case == "unknown_analysis" else "describe"
    params = ["--param", "columns=credit_amount"] + (["--param", "colour=red"] if case == "unknown_param" else [])
    code = cli_main(["analyze", analysis, "--data", a, "--data", b, *params, "--json"])
    out = capsys.readouterr()
    assert code != 0
    assert out.out == ""  # nothing revealed
    assert re.search(expected, out.err), out.err


def test_a_bad_label_stops_default_rate_before_anything_is_published_or_opened(bank_files, capsys, monkeypatch):
    """The file passes loading and the schema check (the flag column is numeric everywhere);
    bank_b's label 2 is found inside the job, and must stop it before any bank's group keys
    are published or any value is opened."""
    disclosed = []
    publish, open_ = Context.publish_each, SecretTensor._open  # every publish goes through publish_each

    def spy_publish(self, value, owners):
        disclosed.extend(("publish", self.name_of(owner)) for owner in owners)
        return publish(self, value, owners)

    def spy_open(self, to):
        disclosed.append(("open", self.ctx.name_of(self.ctx.rank)))
        return open_(self, to)

    monkeypatch.setattr(Context, "publish_each", spy_publish)
    monkeypatch.setattr(SecretTensor, "_open", spy_open)
    code = cli_main(["analyze", "default_rate", *data_args(bank_files, "flags"), "--param", "label=flag",
                     "--param", "by=purpose", "--json"])
    out = capsys.readouterr()
    assert code != 0
    assert out.out == ""
    assert re.search(r"InputError: bank_b, column 'flag': row 5 is not 0 or 1", out.err), out.err
    assert disclosed == []


@pytest.mark.parametrize("analysis, params", [
    ("describe", ["--param", "columns=credit_amount", "--param", "decimals=0"]),
    ("default_rate_overall", ["--param", "label=creditability", "--param", "positive=bad",
                              "--param", "amount=credit_amount", "--param", "amount_decimals=0"]),
])
def test_every_banks_checks_run_before_any_job_starts(bank_files, tmp_path, capsys, monkeypatch, analysis, params):
    """bank_c's 1.5 in an integer column is caught by the analysis' own check, before the
    parties are even started: nothing can have been shared."""
    import smpc.simulation

    german = pd.read_csv(DATA / "german_credit.csv")
    part = german.iloc[2::3].copy()
    part["credit_amount"] = part["credit_amount"].astype(float)
    part.iloc[3, part.columns.get_loc("credit_amount")] = 1.5
    bad = tmp_path / "bank_c.csv"
    part.to_csv(bad, index=False)
    started = []
    monkeypatch.setattr(smpc.simulation, "simulate", lambda *a, **k: started.append(1))
    code = cli_main(["analyze", analysis, "--data", f"bank_a={bank_files[('german', 'bank_a')]}",
                     "--data", f"bank_b={bank_files[('german', 'bank_b')]}", "--data", f"bank_c={bad}", *params])
    out = capsys.readouterr()
    assert code != 0 and out.out == "" and not started
    assert "bank_c, column 'credit_amount': row 4 has more than 0 decimal places" in out.err, out.err


def test_ids_are_read_as_text_so_leading_zeros_still_match(tmp_path, capsys):
    """bank_a's 00123 read as a number would become 123, while bank_b's column (which also
    holds X9) keeps 00123: the applicant on bank_b's list would be missed."""
    (tmp_path / "a.csv").write_text("customer_id\n00123\n00456\n")
    (tmp_path / "b.csv").write_text("customer_id\n00123\nX9\n")
    code = cli_main(["analyze", "blacklist_hits", "--data", f"bank_a={tmp_path / 'a.csv'}",
                     "--data", f"bank_b={tmp_path / 'b.csv'}", "--param", "id=customer_id",
                     "--param", "requester=bank_a", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["result"]["hits"] == {"00123": 1, "00456": 0}


@pytest.mark.parametrize("chunk", [None, 7])
def test_a_non_utf8_file_is_refused_alike_by_analyze_and_the_service_at_its_real_byte(tmp_path, capsys, monkeypatch,
                                                                                     chunk):
    """A Latin-1 byte deep in a CSV file: ``smpc analyze`` and the party service's loader both
    refuse the file, naming the byte's offset from the start of the file and its line (not a
    position within one field), also when the byte is in a column the job does not read.
    ``chunk``: the check reads the file in pieces; a small one puts sequences across them."""
    import smpc.tables
    from smpc.errors import InputError
    from smpc.service.config import DataSource
    from smpc.service.policy import load_table as service_load_table

    if chunk is not None:
        monkeypatch.setattr(smpc.tables, "_CHECK_CHUNK", chunk)
    german = pd.read_csv(DATA / "german_credit.csv").iloc[:40]
    text = german.to_csv(index=False)
    lines = text.splitlines(keepends=True)
    at = len("".join(lines[:31]).encode()) + lines[31].index(",") + 1  # line 32's second field
    raw = text.encode()
    raw = raw[:at] + "\u00e9".encode() + b"x\xe9y" + raw[at:]  # a real é first: the bad byte is at + 3
    bad = tmp_path / "bank_b.csv"
    bad.write_bytes(raw)
    good = tmp_path / "bank_a.csv"
    german.to_csv(good, index=False)
    where = rf"byte 0xe9 at byte offset {at + 3} \(line 32: invalid continuation byte\)"
    code = cli_main(["analyze", "describe", "--data", f"bank_a={good}", "--data", f"bank_b={bad}",
                     "--param", "columns=credit_amount", "--json"])
    out = capsys.readouterr()
    assert code != 0 and out.out == ""
    assert re.search(rf"bank_b: bank_b\.csv is not UTF-8 text: {where}; save the file as UTF-8", out.err), out.err
    source = DataSource("loans", bad, "csv", {"credit_amount": "int"})  # a column before the bad byte's
    with pytest.raises(InputError, match=rf"bank_b, data source 'loans': bank_b\.csv is not UTF-8 text: {where}"):
        service_load_table(source, ["credit_amount"], "bank_b")
    assert len(service_load_table(DataSource("loans", good, "csv", {"credit_amount": "int"}), ["credit_amount"],
                                  "bank_a")) == 40


def test_multi_lending_in_buckets_on_worker_processes_matches_the_plaintext_twin(tmp_path, capsys):
    rng = np.random.default_rng(3)
    args = []
    for bank in ("bank_a", "bank_b", "bank_c"):
        ids = [f"00{int(i)}" for i in rng.integers(0, 30, 25)]
        pd.DataFrame({"customer_id": ids, "balance": rng.integers(-10**6, 10**9, 25) / 100}).to_csv(
            tmp_path / f"{bank}.csv", index=False)
        args += ["--data", f"{bank}={tmp_path / f'{bank}.csv'}"]
    params = ["--param", "id=customer_id", "--param", "balance=balance", "--param", "balance_threshold=6000000",
              "--param", "min_lenders=3"]
    code = cli_main(["analyze", "multi_lending", *args, *params, "--workers", "2", "--buckets", "3", "--json",
                     "--check"])
    out = capsys.readouterr()
    assert code == 0, out.err
    got = json.loads(out.out)
    assert got["check"]["largest_difference"] == 0
    assert got["cost"]["buckets"] == 3 and got["cost"]["workers"] == 2
    assert got["result"]["flagged_count"] > 0
    code = cli_main(["analyze", "multi_lending", *args, *params, "--workers", "0"])
    assert code == 2 and "workers must be at least 1" in capsys.readouterr().err
