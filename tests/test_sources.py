"""Tables read in batches (smpc.sources): the same values as pandas reads whole, the same
aggregates and results as the whole-table path, and refusals that name the row of the file
when the bad value lies in a late batch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smpc import analyses
from smpc.analyses import statistics
from smpc.analyses.common import exact_dot, exact_sum
from smpc.errors import InputError, RangeError
from smpc.service.config import Column, DataSource
from smpc.service.policy import load_table, open_table, scan_table
from smpc.sources import TableSource, as_source
from smpc.tables import read_table

ADVERSARIAL_CSV = (
    "amount,flag,grade,note,id,count\n"
    "1000000000.25,1,A,\"a, quoted\",00123,7\n"
    "-999999999.99,0,B,NA,00042,\n"
    ",1,A,\"two\nlines\",7,3\n"
    "0.1,True,7,null,x,-2\n"
    "123456789.5,0,7.0,,0001,4\n"
    "-0.0,1,N/A,n/a,9,5\n"
    "1e3,0,C,NULL,10,6\n"
)


def _same(a: pd.Series, b: pd.Series) -> bool:
    return len(a) == len(b) and all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(a.tolist(), b.tolist(), strict=True))


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 100])
def test_a_csv_reads_in_batches_as_pandas_reads_it_whole(tmp_path, batch_rows):
    path = tmp_path / "bank.csv"
    path.write_text(ADVERSARIAL_CSV)
    whole = read_table(path, "bank_a", text_columns=["id"])
    source = TableSource.of_file(path, "bank_a", text_columns=["id"], batch_rows=batch_rows)
    assert source.columns == list(whole.columns) and source.rows == len(whole)
    starts = [b.start for b in source.batches()]
    assert starts == list(range(0, len(whole), batch_rows))
    streamed = source.frame()
    for c in whole.columns:
        assert _same(streamed[c], whole[c]), c
    assert source.kinds(list(whole.columns)) == {
        c: "numeric" if pd.api.types.is_numeric_dtype(whole[c]) else "text" for c in whole.columns}


def test_a_parquet_file_and_a_dataframe_read_in_batches_keep_rows_and_types(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"balance": np.round(rng.uniform(-1e9, 1e9, 1000), 2),
                          "grade": rng.choice(["A", "B", None], 1000), "n": np.arange(1000)})
    frame.loc[[3, 997], "balance"] = np.nan
    frame.to_parquet(tmp_path / "t.parquet")
    for source in (TableSource.of_file(tmp_path / "t.parquet", "bank_a", batch_rows=64),
                   TableSource.of_frame(frame, batch_rows=64)):
        assert source.rows == 1000
        batches = list(source.batches(["n", "balance"]))
        assert [b.start for b in batches] == list(range(0, 1000, 64))
        assert all(b.frame["n"].tolist() == list(range(b.start, b.start + len(b.frame))) for b in batches)
        assert _same(source.frame()["balance"], frame["balance"]) and _same(source.frame()["grade"], frame["grade"])
    # a file of zero rows is one empty batch that keeps its types
    frame.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    empty = list(TableSource.of_file(tmp_path / "empty.parquet", "bank_a").batches(["balance"]))
    assert len(empty) == 1 and len(empty[0].frame) == 0 and empty[0].frame["balance"].dtype == np.float64


def test_exact_sums_of_units_never_wrap():
    big = 2**53 - 1
    x = np.array([big, -big, big, big, -3, 7] * 1000, dtype=np.int64)
    y = np.array([big, big, -big, 5, 11, -13] * 1000, dtype=np.int64)
    assert exact_sum(x) == sum(int(v) for v in x)
    assert exact_dot(x, y) == sum(int(a) * int(b) for a, b in zip(x, y, strict=True))
    assert exact_dot(x, x) == sum(int(v) ** 2 for v in x)
    with pytest.raises(RangeError):
        exact_sum(np.array([2**62], dtype=np.int64))


def _bank_frames(seed: int = 11, rows: int = 700) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for b, bank in enumerate(["bank_a", "bank_b", "bank_c"]):
        n = rows + 37 * b
        balance = np.round(rng.uniform(-1e9, 1e9, n), 2)
        balance[rng.integers(0, n, 5)] = np.nan
        balance[:3] = [1e9, -1e9, 0.01]  # the bound's extremes and ties
        out[bank] = pd.DataFrame({
            "balance": balance,
            "limit": np.round(rng.uniform(0, 5e8, n), 2),
            "default": rng.integers(0, 2, n),
            "grade": rng.choice(["A", "B", "C", "D"], n),
        })
    return out


def test_local_aggregates_read_in_batches_equal_the_whole_tables(tmp_path):
    for bank, frame in _bank_frames().items():
        frame.to_parquet(tmp_path / f"{bank}.parquet")
        frame.to_csv(tmp_path / f"{bank}.csv", index=False)
        for source in (TableSource.of_file(tmp_path / f"{bank}.parquet", bank, batch_rows=50),
                       TableSource.of_file(tmp_path / f"{bank}.csv", bank, batch_rows=64),
                       TableSource.of_frame(frame, batch_rows=7)):
            cols = ["balance", "limit"]
            assert (statistics._describe_local(source, bank, cols, 2, 1e9, shift=3)
                    == statistics._describe_local(frame, bank, cols, 2, 1e9, shift=3))
            whole = frame["balance"].dropna()
            sums = statistics._column_sums(source, bank, ["balance"], 2, 1e9)[0]
            assert sums["n"] == len(whole) and sums["s1"] == sum(round(v * 100) for v in whole)
            assert sums["s2"] == sum(round(v * 100) ** 2 for v in whole)
            edges = [-1e9, -1e6, 0, 1e6, 1e9]
            assert (statistics._histogram_local(source, bank, "balance", edges).tolist()
                    == np.histogram(whole, bins=edges)[0].tolist())
            assert (statistics._rate_counts(source, bank, "default", None, "grade", None)
                    == {g: [len(part), int(part["default"].sum())] for g, part in frame.groupby("grade")})
            assert (statistics._corr_local(source, bank, cols, 2, 1e9, shift=0)
                    == statistics._corr_local(frame, bank, cols, 2, 1e9, shift=0))
            assert (statistics._column_units(source, bank, "balance", 2, 1e9).tolist()
                    == np.round(whole.to_numpy() * 100).astype(np.int64).tolist())
        head = frame.head(40)  # batches of one row: every boundary a batch boundary
        assert (statistics._describe_local(TableSource.of_frame(head, batch_rows=1), bank, ["balance", "limit"], 2,
                                           1e9, shift=3)
                == statistics._describe_local(head, bank, ["balance", "limit"], 2, 1e9, shift=3))


@pytest.mark.parametrize(("name", "params"), [
    ("describe", {"columns": ["balance", "limit"], "decimals": 2, "bound": 1e9}),
    ("histogram", {"column": "balance", "edges": [-1e9, -5e8, 0, 5e8, 1e9]}),
    ("default_rate", {"label": "default", "by": "grade"}),
    ("corr", {"columns": ["balance", "limit"], "decimals": 2, "bound": 1e9}),
    ("quantiles", {"column": "limit", "q": [0.1, 0.5, 0.9], "decimals": 2, "bound": 1e9}),
])
def test_an_analysis_over_files_read_in_batches_equals_it_over_dataframes(tmp_path, name, params):
    frames = _bank_frames(rows=300)
    sources = {}
    for bank, frame in frames.items():
        frame.to_parquet(tmp_path / f"{bank}.parquet")
        sources[bank] = TableSource.of_file(tmp_path / f"{bank}.parquet", bank, batch_rows=40)
    analysis = analyses.get(name)
    assert analysis.streams
    streamed = analysis.run_simulated(sources, **params)
    assert streamed == analysis.run_simulated(frames, **params)
    assert analysis.run_plaintext(sources, **params) == analysis.plaintext(frames, **analysis.parse_params(params))


# ----- refusals from a late batch name the row of the file ----------------------------------------
_LATE = 1000  # 1-based row of the bad value; batches of 64 rows put it in the 16th


def _with_bad(column: str, value, rows: int = 1200) -> pd.DataFrame:
    frame = pd.DataFrame({"balance": [float(i) + 0.5 for i in range(rows)], "default": [i % 2 for i in range(rows)],
                          "grade": ["A", "B", "C"] * (rows // 3)}, dtype=object)
    frame.loc[_LATE - 1, column] = None if value == "" else value  # "": an empty field
    return frame


@pytest.mark.parametrize(("column", "value", "run", "error", "problem"), [
    ("balance", "abc", lambda t: statistics._describe_local(t, "bank_a", ["balance"], 2, 1e6), InputError,
     "is not numeric"),
    ("balance", "1.234", lambda t: statistics._describe_local(t, "bank_a", ["balance"], 2, 1e6), InputError,
     "has more than 2 decimal places"),
    ("balance", "5e6", lambda t: statistics._describe_local(t, "bank_a", ["balance"], 2, 1e6), RangeError,
     "exceeds the declared bound"),
    ("balance", "abc", lambda t: statistics._histogram_local(t, "bank_a", "balance", [0, 1e6]), InputError,
     "is not numeric"),
    ("balance", "abc", lambda t: statistics._corr_local(t, "bank_a", ["balance", "default"], 2, 1e6), InputError,
     "is not numeric"),
    ("balance", "abc", lambda t: statistics._column_units(t, "bank_a", "balance", 2, 1e6), InputError,
     "is not numeric"),
    ("default", "2", lambda t: statistics._rate_counts(t, "bank_a", "default", None, "grade", None), InputError,
     "is not 0 or 1"),
    ("default", "", lambda t: statistics._rate_counts(t, "bank_a", "default", None, "grade", None), InputError,
     "is empty"),
    ("grade", "", lambda t: statistics._rate_counts(t, "bank_a", "default", None, "grade", None), InputError,
     "has no group key"),
    ("grade", "Z", lambda t: statistics._rate_counts(t, "bank_a", "default", None, "grade", ["A", "B", "C"]),
     InputError, "has a group key not in the declared groups"),
])
def test_a_bad_value_in_a_late_batch_is_refused_naming_its_row(tmp_path, column, value, run, error, problem):
    frame = _with_bad(column, value)
    frame.to_csv(tmp_path / "bank.csv", index=False)
    source = TableSource.of_file(tmp_path / "bank.csv", "bank_a", batch_rows=64)
    with pytest.raises(error) as streamed:
        run(source)
    with pytest.raises(error) as whole:  # pandas' whole table, one batch: the same message
        run(read_table(tmp_path / "bank.csv", "bank_a"))
    assert str(streamed.value) == str(whole.value)
    assert f"bank_a, column '{column}': row {_LATE} {problem}" in str(streamed.value)
    with pytest.raises(error, match=f"row {_LATE} "):  # a DataFrame given through the Python API, in batches
        run(as_source(frame, batch_rows=64))


def test_the_cli_names_the_row_of_a_late_batch(tmp_path, monkeypatch, capsys):
    from smpc import sources
    from smpc.cli import main as cli_main

    monkeypatch.setattr(sources, "DEFAULT_BATCH_ROWS", 64)

    def run(bad):
        args = []
        for b, bank in enumerate(["bank_a", "bank_b", "bank_c"]):
            frame = _with_bad("balance", bad if b == 1 else 1.5)
            frame.to_csv(tmp_path / f"{bank}.csv", index=False)
            args += ["--data", f"{bank}={tmp_path / f'{bank}.csv'}"]
        assert cli_main(["analyze", "describe", *args, "--param", "columns=balance", "--json"]) == 2
        return capsys.readouterr().err

    assert f"bank_b, column 'balance': row {_LATE} has more than 2 decimal places" in run("1.234")
    assert f"text at bank_b (bank_b row {_LATE} is not a number)" in run("abc")


def test_the_party_service_types_and_checks_every_batch_naming_the_row(tmp_path, monkeypatch):
    from smpc import sources

    monkeypatch.setattr(sources, "DEFAULT_BATCH_ROWS", 64)
    frame = _with_bad("balance", 1.5)
    frame["balance"] = frame["balance"].astype(float)
    frame.loc[_LATE - 1, "balance"] = 2e6
    frame.to_csv(tmp_path / "bank.csv", index=False)
    source = DataSource("loans", tmp_path / "bank.csv", "csv", {"balance": "float", "grade": "str"},
                        declared={"balance": Column("float", bound=1e6, decimals=2)})
    with pytest.raises(InputError) as whole:
        load_table(source, ["balance", "grade"], "bank_a")
    with pytest.raises(InputError) as streamed:
        scan_table(open_table(source, ["balance", "grade"], "bank_a"))
    assert str(streamed.value) == str(whole.value)
    assert f"column 'balance': row {_LATE} exceeds the declared bound 1e+06" in str(streamed.value)
    frame["balance"] = frame["balance"].astype(object)
    frame.loc[_LATE - 1, "balance"] = "x"
    frame.to_csv(tmp_path / "bank.csv", index=False)
    with pytest.raises(InputError, match=rf"\(declared float\): row {_LATE} is not a number$"):
        scan_table(open_table(source, ["balance", "grade"], "bank_a"))


def test_a_streamed_job_reads_no_more_rows_than_the_policy_allows(tmp_path):
    from smpc.service.policy import _at_most

    frame = pd.DataFrame({"x": np.arange(200, dtype=float)})
    source = TableSource.of_frame(frame, batch_rows=64)
    assert scan_table(source.replace(prepare=_at_most(lambda f, s: f, 200, "bank_a"))) == 200
    with pytest.raises(InputError, match="^bank_a has more rows than the maximum of 150$"):
        scan_table(source.replace(prepare=_at_most(lambda f, s: f, 150, "bank_a")))
