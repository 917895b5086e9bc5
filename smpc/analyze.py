"""``smpc analyze``: run a catalogue analysis over one CSV or Parquet file per bank, locally.

The three compute parties are simulated in this process (``smpc.simulate``); up to three
banks are the compute parties themselves, more banks are input parties. Everything a bank's
file contains is checked on that bank before anything is shared; a bad file stops the job
with one error naming the bank, the column and the problem, and nothing is revealed.

An analysis that reads its table in batches (``Analysis.streams``: the statistics) gets each
file as a ``smpc.sources.TableSource`` (DuckDB reads it in record batches), so a file of any
length is aggregated in bounded memory; the others, and ``--check``'s plaintext twin, read
the files whole.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import pandas as pd

from smpc.errors import InputError, SmpcError
from smpc.sources import TableSource, as_frame
from smpc.tables import read_table, table_format

_BANK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def parse_data_args(items: list[str]) -> dict[str, Path]:
    """{bank: path} from repeated ``BANK=PATH``; InputError for malformed or repeated banks."""
    out: dict[str, Path] = {}
    for item in items:
        bank, sep, path = item.partition("=")
        if not sep or not path or not _BANK_NAME.fullmatch(bank):
            raise InputError(f"--data {item!r}: expected BANK=PATH with a bank name such as bank_a")
        if bank in out:
            raise InputError(f"--data: bank '{bank}' is given twice")
        out[bank] = Path(path)
    if not out:
        raise InputError("no --data BANK=PATH given: an analysis needs at least one bank's file")
    return out


def parse_param_args(items: list[str] | None) -> dict[str, str]:
    """{key: value text} from repeated ``KEY=VALUE`` (``--param``); InputError for an item
    without a key. The analysis' schema types the values (``Analysis.parse_params``)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


KEY_PARAMS = ("id", "attribute", "receiver", "receiver_bank", "sender")
"""Parameters naming identifier columns, which a CSV holds as text."""


def _file_format(bank: str, path: Path) -> str:
    """The format of one bank's file; InputError naming the bank for a missing file or an
    unknown format."""
    if not path.exists():
        raise InputError(f"{bank}: file {path} does not exist")
    try:
        return table_format(path)
    except InputError as exc:
        raise InputError(f"{bank}: {exc}") from None


def load_table(bank: str, path: Path, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """One bank's file as a DataFrame (``smpc.tables.read_table``, as the party service reads
    it); InputError naming the bank for anything unusable. ``text_columns`` (ids) are read
    from CSV as text: as numbers, 00123 would become 123 at one bank and stay 00123 at
    another, and the two would never match. An empty file and a file with a header only are
    both a bank with zero rows (the disclosure rules decide what such a job may release),
    not an error."""
    fmt = _file_format(bank, path)
    return read_table(path, bank, fmt=fmt, text_columns=text_columns)


def open_table(bank: str, path: Path, text_columns: tuple[str, ...] = ()) -> TableSource:
    """One bank's file as a ``TableSource`` (read in batches when an analysis reads it), with
    ``load_table``'s refusals for a missing file or an unknown format."""
    fmt = _file_format(bank, path)
    return TableSource.of_file(path, bank, fmt=fmt, text_columns=text_columns)


def _rows(table) -> int:
    return table.rows if isinstance(table, TableSource) else len(table)


def with_columns(table, columns: list[str]):
    """A zero-row table with every one of ``columns``: an empty file names no columns, a
    header-only file perhaps not all, and either holds nothing to contradict a schema."""
    if all(c in table.columns for c in columns) or _rows(table):
        return table
    if isinstance(table, TableSource):
        return table.replace(extra_columns=columns)
    return table.reindex(columns=[*table.columns, *(c for c in columns if c not in table.columns)])


def _kind(table, column: str) -> str:
    if isinstance(table, TableSource):
        return table.kinds([column])[column]
    return "numeric" if pd.api.types.is_numeric_dtype(table[column]) else "text"


def _first_text_row(table, column: str) -> int | None:
    """The 0-based row of the first filled entry of ``column`` that is not a number."""
    batches = table.batches([column]) if isinstance(table, TableSource) else [None]
    for batch in batches:
        start, col = (0, table[column]) if batch is None else (batch.start, batch.frame[column])
        bad = (pd.to_numeric(col, errors="coerce").isna() & col.notna()).to_numpy()
        if bad.any():
            return start + int(bad.argmax())
    return None


def check_schemas(tables: dict, columns: list[str]) -> None:
    """Every bank must have the analysis' columns, of the same kind (numeric or text); a bank
    with zero rows has no kind to disagree with."""
    for c in columns:
        kinds = {}
        for bank, table in tables.items():
            if c not in table.columns:
                have = ", ".join(map(str, list(table.columns)[:20]))
                raise InputError(f"{bank}: column '{c}' is missing from its data (it has: {have})")
            if _rows(table):
                kinds[bank] = _kind(table, c)
        if len(set(kinds.values())) > 1:
            numeric = [b for b, k in kinds.items() if k == "numeric"]
            text = [b for b, k in kinds.items() if k == "text"]
            where = []
            for bank in text:  # the row that made it text, not its value (it goes to every bank)
                row = _first_text_row(tables[bank], c)
                if row is not None:
                    where.append(f"{bank} row {row + 1} is not a number")
            detail = f" ({'; '.join(where)})" if where else ""
            raise InputError(
                f"mismatched schemas: column '{c}' is numeric at {', '.join(numeric)} but text at {', '.join(text)}"
                f"{detail}"
            )


def leakage_items(text: str) -> list[str]:
    """The Leakage section as a list of statements."""
    parts = re.split(r";\s+|\.\s+(?=[A-Z])", text.strip())
    return [p.strip().rstrip(".") for p in parts if p.strip()]


def largest_difference(secure, plain, path: str = "") -> tuple[float, str]:
    """Largest absolute difference between numeric leaves of two results (and where);
    inf where the structures differ."""
    if isinstance(secure, dict) and isinstance(plain, dict):
        if set(secure) != set(plain):
            return math.inf, f"{path or 'result'}: keys differ"
        worst = (0.0, "")
        for k in secure:
            d = largest_difference(secure[k], plain[k], f"{path}.{k}" if path else str(k))
            worst = max(worst, d, key=lambda t: t[0])
        return worst
    if isinstance(secure, (list, tuple)) and isinstance(plain, (list, tuple)):
        if len(secure) != len(plain):
            return math.inf, f"{path}: lengths differ"
        worst = (0.0, "")
        for i, (a, b) in enumerate(zip(secure, plain, strict=True)):
            worst = max(worst, largest_difference(a, b, f"{path}[{i}]"), key=lambda t: t[0])
        return worst
    if isinstance(secure, (int, float)) and isinstance(plain, (int, float)) and not isinstance(secure, bool):
        if math.isnan(secure) and math.isnan(plain):
            return 0.0, path
        return abs(float(secure) - float(plain)), path
    return (0.0, path) if secure == plain else (math.inf, f"{path}: {secure!r} != {plain!r}")


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _clean_nan(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_nan(v) for v in value]
    return value


class _Progress:
    """One updating stderr line; silent when stderr is not a terminal and the job is short."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, fraction: float, stage: str) -> None:
        if time.monotonic() - self.start < 0.5 and fraction < 1.0:
            return  # short jobs print nothing
        filled = int(fraction * 24)
        bar = "#" * filled + "." * (24 - filled)
        end = "\n" if fraction >= 1.0 else ""
        self.stream.write(f"\r[{bar}] {fraction * 100:5.1f}% {stage:<40}{end}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="run a catalogue analysis over one CSV/Parquet file per bank (three compute parties simulated locally)",
    )
    p.add_argument("analysis", help="catalogue name, e.g. describe, default_rate, histogram, quantiles, corr")
    p.add_argument("--data", action="append", default=[], metavar="BANK=PATH", help="one bank's file (repeat per bank)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="analysis parameter (repeat)")
    p.add_argument("--json", action="store_true", help="print one JSON object: analysis, result, leakage, cost")
    p.add_argument("--check", action="store_true", help="also run the plaintext twin and print the largest difference")
    p.add_argument("--explain", action="store_true", help="print the leakage and cost without running anything")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run a join analysis (multi_lending) as bucket sessions on N worker processes per party")
    p.add_argument("--buckets", type=int, default=None, metavar="K",
                   help="bucket sessions of a join analysis (default: chosen from the rows and --workers; 1 = one "
                        "session)")
    p.set_defaults(func=main)


def main(args) -> int:
    from smpc import analyses

    try:
        analysis = analyses.get(args.analysis)
        params = parse_param_args(args.param)
        if args.explain:
            info = analysis.describe()
            if args.json:
                print(json.dumps({"analysis": analysis.name, "leakage": leakage_items(analysis.leakage),
                                  "cost": analysis.cost, "params": info["params"]}, indent=2))
            else:
                print(f"{analysis.name}: {analysis.summary}\n\nLeakage: {analysis.leakage}\n\nCost: {analysis.cost}")
            return 0
        parsed = analysis.parse_params(params)
        paths = parse_data_args(args.data)
        # the fraud analyses' key columns: read as text, so that 00123 keeps its leading zeros
        ids = tuple(parsed[k] for k in KEY_PARAMS if isinstance(parsed.get(k), str))
        columns = analysis.columns(parsed)
        read = open_table if analysis.streams else load_table
        tables = {bank: with_columns(read(bank, path, ids), columns) for bank, path in paths.items()}
        check_schemas(tables, columns)
        for bank, table in tables.items():  # each bank's own checks, before any job starts
            analysis.check_input(table, bank, parsed)
        progress = None if args.json else _Progress()
        if args.workers != 1 or args.buckets is not None:
            from smpc.workers import run_bucketed

            result, cost = run_bucketed(analysis.name, tables, parsed, workers=args.workers, buckets=args.buckets,
                                        progress=progress)
        else:
            result, cost = analysis.run_local(tables, parsed, progress=progress)
        if progress is not None:
            progress.close()
        output = {"analysis": analysis.name, "result": result, "leakage": leakage_items(analysis.leakage), "cost": cost}
        if args.check:
            plain = analysis.plaintext({bank: as_frame(t) for bank, t in tables.items()}, **parsed)
            diff, where = largest_difference(result, plain)
            output["check"] = {"largest_difference": diff, "where": where}
        if args.json:
            print(json.dumps(_clean_nan(output), indent=2, default=_json_default))
        else:
            print(json.dumps(_clean_nan(result), indent=2, default=_json_default))
            print(f"cost: {cost['rounds']} rounds, {cost['bytes']:,} bytes in all", file=sys.stderr)
            if args.check:
                print(f"check: largest difference from the plaintext twin {output['check']['largest_difference']:.3g}"
                      + (f" at {where}" if where else ""))
        return 0
    except SmpcError as exc:
        print(f"smpc analyze: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
