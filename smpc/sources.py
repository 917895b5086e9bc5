"""One bank's table as a source of row batches, so that an analysis which aggregates reads a
file of any length in bounded memory.

A ``TableSource`` is a CSV or Parquet file, read by DuckDB (the embedded engine) as Arrow
record batches, or an in-memory pandas DataFrame (the Python API, tests), read the same way:
``batches()`` yields ``Batch(start, frame)``, at most ``batch_rows`` rows as a DataFrame and
the 0-based position of its first row in the table, so a refusal names the row of the file
whatever batch it lies in. A source always yields at least one batch (an empty one for a
table of zero rows), so checks that look at a column's type still run.

A CSV file reads as pandas reads it (``smpc.tables.read_table``), so the streamed and the
materialised paths agree value for value: DuckDB hands over every field as text, pandas'
own missing-value words (NA, null, NaN, ...) are empty, and a column is numeric only if every
filled field of the whole file is a number (a first pass over the file decides it, as pandas
decides a column's type on all of its rows, never on one batch); its fields then convert
with ``pandas.to_numeric``. ``true``/``false`` columns are booleans, as pandas reads them.
The file must be UTF-8 (``tables.check_utf8``). A Parquet file's columns keep their types.

DuckDB keeps the file's row order (``preserve_insertion_order``), runs on one thread per
source and spills to a temporary folder beyond ``memory_limit``, so what a party holds is a
batch, not the table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smpc.errors import InputError
from smpc.tables import check_utf8, table_format

DEFAULT_BATCH_ROWS = 1 << 17
"""Rows per batch: 131072 rows of a few float64 columns are a few MB."""

DUCKDB_MEMORY_LIMIT = "256MB"
"""What DuckDB may hold for one query before it spills (the reads themselves stream)."""

# the words pandas.read_csv reads as a missing value by default (pandas.io.parsers'
# STR_NA_VALUES, a private name, spelled out here)
NA_WORDS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
_TRUE_WORDS = frozenset({"True", "TRUE", "true"})
_FALSE_WORDS = frozenset({"False", "FALSE", "false"})

Prepare = Callable[[pd.DataFrame, int], pd.DataFrame]
"""A conversion of each batch (the party service's declared types): (frame, start) -> frame."""


@dataclass(frozen=True)
class Batch:
    """Rows ``start`` .. ``start + len(frame) - 1`` (0-based) of a table."""

    start: int
    frame: pd.DataFrame


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TableSource:
    """One bank's table, read in batches of at most ``batch_rows`` rows.

    >>> import pandas as pd
    >>> src = TableSource.of_frame(pd.DataFrame({"x": [1.5, 2.0, None]}), batch_rows=2)
    >>> [(b.start, b.frame["x"].tolist()) for b in src.batches(["x"])]
    [(0, [1.5, 2.0]), (2, [nan])]
    >>> src.rows
    3
    """

    def __init__(self, *, path: Path | None = None, fmt: str | None = None, frame: pd.DataFrame | None = None,
                 where: str = "", text_columns: Sequence[str] = (), batch_rows: int | None = None,
                 prepare: Prepare | None = None, extra_columns: Sequence[str] = (),
                 select: Sequence[str] | None = None):
        if (path is None) == (frame is None):
            raise ValueError("a TableSource is a file or a DataFrame")
        batch_rows = DEFAULT_BATCH_ROWS if batch_rows is None else batch_rows
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        self.path = None if path is None else Path(path)
        self.fmt = None if path is None else (fmt or table_format(self.path))
        self._frame = frame
        self.where = where or (self.path.name if self.path is not None else "table")
        self.text_columns = tuple(text_columns)
        self.batch_rows = int(batch_rows)
        self.prepare = prepare
        self.extra_columns = tuple(extra_columns)
        self.select = None if select is None else tuple(select)
        self._columns: list[str] | None = None
        self._kinds: dict[str, str] | None = None
        self._rows: int | None = None
        self._empty_file = False

    # ----- constructors --------------------------------------------------------------
    @classmethod
    def of_file(cls, path: Path, where: str, *, fmt: str | None = None, text_columns: Sequence[str] = (),
                batch_rows: int | None = None) -> TableSource:
        """A CSV or Parquet file (by ``fmt`` or its extension); errors start with ``where``."""
        return cls(path=path, fmt=fmt, where=where, text_columns=text_columns, batch_rows=batch_rows)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, *, batch_rows: int | None = None) -> TableSource:
        """An in-memory table, read in the same batches as a file."""
        return cls(frame=frame, batch_rows=batch_rows)

    def replace(self, **changes) -> TableSource:
        """The same table with other settings (``prepare``, ``batch_rows``, ``extra_columns``)."""
        kwargs = dict(path=self.path, fmt=self.fmt, frame=self._frame, where=self.where,
                      text_columns=self.text_columns, batch_rows=self.batch_rows, prepare=self.prepare,
                      extra_columns=self.extra_columns, select=self.select)
        kwargs.update(changes)
        return TableSource(**kwargs)

    # ----- what the table has --------------------------------------------------------
    @property
    def is_file(self) -> bool:
        return self.path is not None

    @property
    def columns(self) -> list[str]:
        """The table's columns (a file's header or schema; no rows are read; only those in
        ``select`` where given), then any ``extra_columns`` it lacks (empty: a file of zero
        rows given an analysis' schema)."""
        if self._columns is None:
            if self._frame is not None:
                self._columns = [str(c) for c in self._frame.columns]
            else:
                self._columns = self._file_columns()
        have = self._columns if self.select is None else [c for c in self.select if c in self._columns]
        return [*have, *(c for c in self.extra_columns if c not in have)]

    @property
    def rows(self) -> int:
        """The number of rows (a Parquet file's metadata; a CSV file is counted once)."""
        if self._rows is None:
            if self._frame is not None:
                self._rows = len(self._frame)
            elif not self._file_columns():
                self._rows = 0
            else:
                self._rows = int(self._query(f"SELECT count(*) FROM {self._relation()}").fetchone()[0])
        return self._rows

    def kinds(self, columns: Sequence[str]) -> dict[str, str]:
        """'numeric' or 'text' per column, as pandas would type it (bool counts as numeric,
        as ``pandas.api.types.is_numeric_dtype`` says)."""
        if self._frame is not None or self.fmt == "parquet":
            # a batch of zero rows carries the column types
            empty = next(iter(self.replace(batch_rows=1, prepare=None)._raw_batches(list(columns), limit=0)))
            return {c: "numeric" if pd.api.types.is_numeric_dtype(empty.frame[c]) else "text" for c in columns}
        kinds = self._csv_kinds([c for c in columns if c in self._file_columns()])
        return {c: "numeric" if kinds.get(c, "text") in ("numeric", "bool") else "text" for c in columns}

    # ----- reading ----------------------------------------------------------------------
    def batches(self, columns: Sequence[str] | None = None) -> Iterator[Batch]:
        """The rows of ``columns`` (default: all) in file order, at most ``batch_rows`` at a
        time, each batch through ``prepare`` (with its start row)."""
        cols = self.columns if columns is None else list(columns)
        missing = [c for c in cols if c not in self.columns]
        if missing:
            have = ", ".join(self.columns[:20])
            raise InputError(f"{self.where}: column '{missing[0]}' is missing from its data (it has: {have})")
        for batch in self._raw_batches(cols):
            frame = batch.frame if self.prepare is None else self.prepare(batch.frame, batch.start)
            yield Batch(batch.start, frame)

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row of ``columns`` in one DataFrame: for analyses that need all rows at once
        (a join, a sort, a fit); its memory grows with the rows."""
        parts = [b.frame for b in self.batches(columns)]
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, ignore_index=True)

    def duplicate_rows(self, columns: Sequence[str]) -> int:
        """Rows of ``columns`` that repeat an earlier row (the file's values, before
        ``prepare``): counted by DuckDB, which spills instead of holding every row."""
        cols = list(columns)
        if not cols:
            return 0
        if self._frame is not None:
            return int(self._frame[cols].duplicated().sum())
        if self.rows == 0:
            return 0
        names = ", ".join(_sql_name(c) for c in cols)
        rel = self._relation()
        sql = f"SELECT (SELECT count(*) FROM {rel}) - (SELECT count(*) FROM (SELECT DISTINCT {names} FROM {rel}))"
        return int(self._query(sql).fetchone()[0])

    # ----- internals --------------------------------------------------------------------
    def _raw_batches(self, cols: list[str], limit: int | None = None) -> Iterator[Batch]:
        self.columns  # noqa: B018 - reads the header once
        present = [c for c in cols if c in self._columns]
        absent = [c for c in cols if c not in present]

        def complete(frame: pd.DataFrame) -> pd.DataFrame:
            if absent:  # extra columns of a table without rows
                frame = frame.assign(**{c: pd.Series([np.nan] * len(frame), index=frame.index, dtype=object)
                                        for c in absent})
            return frame[cols]

        if self._frame is not None:
            n = len(self._frame) if limit is None else min(limit, len(self._frame))
            start = 0
            while True:
                stop = min(start + self.batch_rows, n)
                # rows first: a view, then the batch's columns only (never a copy of the table)
                yield Batch(start, complete(self._frame.iloc[start:stop][present]))
                start = stop
                if start >= n:
                    return
        if not present and self._empty_file:
            yield Batch(0, complete(pd.DataFrame({})))
            return
        if self.fmt == "parquet":
            yield from self._parquet_batches(present, complete, limit)
        else:
            yield from self._csv_batches(present, complete, limit)

    def _file_columns(self) -> list[str]:
        if self._columns is not None:
            return self._columns
        if not self.path.exists():
            raise InputError(f"{self.where}: file {self.path} does not exist")
        if self.fmt == "csv":
            check_utf8(self.path, self.where)
            if self.path.stat().st_size == 0:  # no header either: zero rows, as a header-only file
                self._empty_file = True
                self._columns = []
                return self._columns
            try:  # the header as pandas reads it (its names for blank or repeated ones)
                self._columns = [str(c) for c in pd.read_csv(self.path, nrows=0, encoding="utf-8").columns]
            except pd.errors.EmptyDataError:
                self._empty_file = True
                self._columns = []
            except Exception as exc:  # noqa: BLE001 - any reader failure is an input problem for the file's owner
                raise InputError(f"{self.where}: cannot read {self.path.name} as csv ({exc})") from None
            return self._columns
        try:
            import pyarrow.parquet as pq

            self._columns = [str(c) for c in pq.read_schema(self.path).names]
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{self.where}: cannot read {self.path.name} as parquet ({exc})") from None
        return self._columns

    def _connect(self):
        import duckdb

        spill = Path(tempfile.gettempdir()) / f"smpc-duckdb-{os.getpid()}"
        return duckdb.connect(config={"threads": 1, "memory_limit": DUCKDB_MEMORY_LIMIT,
                                      "preserve_insertion_order": True, "temp_directory": str(spill)})

    def _relation(self) -> str:
        path = _sql_string(str(self.path))
        if self.fmt == "parquet":
            return f"read_parquet({path})"
        # every field as text, header as pandas names it; pandas decides types, not DuckDB's sniffer
        types = ", ".join(f"{_sql_string(c)}: 'VARCHAR'" for c in self._file_columns())
        return (f"read_csv({path}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
                f"columns={{{types}}})")

    def _query(self, sql: str):
        try:
            con = self._connect()
            return con.execute(sql)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is an input problem for the file's owner
            raise InputError(f"{self.where}: cannot read {self.path.name} as {self.fmt} ({exc})") from None

    def _reader(self, cols: list[str], limit: int | None):
        names = ", ".join(_sql_name(c) for c in cols) or "NULL AS _none"
        sql = f"SELECT {names} FROM {self._relation()}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        try:
            con = self._connect()
            relation = con.sql(sql)
            # a relation streams its result (duckdb 1.4 renamed fetch_arrow_reader to_arrow_reader)
            read = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            return con, read(self.batch_rows)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{self.where}: cannot read {self.path.name} as {self.fmt} ({exc})") from None

    def _arrow_batches(self, cols, limit):
        """(start, pandas frame) per record batch of DuckDB's result; an empty first batch
        (with the types) where the query has no rows."""
        con, reader = self._reader(cols, limit)  # the connection lives while its reader is read
        start, seen = 0, False
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{self.where}: cannot read {self.path.name} as {self.fmt} ({exc})") from None
            if rb.num_rows == 0:
                continue
            seen = True
            frame = rb.to_pandas()
            frame.index = pd.RangeIndex(len(frame))
            yield start, frame
            start += rb.num_rows
        if not seen:
            yield 0, reader.schema.empty_table().to_pandas()
        con.close()

    def _parquet_batches(self, cols, complete, limit):
        for start, frame in self._arrow_batches(cols, limit):
            yield Batch(start, complete(frame[cols] if cols else frame.iloc[:, :0]))

    def _csv_kinds(self, columns: Sequence[str]) -> dict[str, str]:
        """Per column of ``columns``: 'numeric', 'bool' or 'text', decided on every row of
        the file (one pass over the columns not decided before)."""
        if self._kinds is None:
            self._kinds = {}
        cols = [c for c in dict.fromkeys(columns) if c not in self._kinds]
        if cols:
            kinds = {c: None for c in cols}  # None: no filled field yet
            for _, frame in self._arrow_batches(cols, None):
                for c in cols:
                    if kinds[c] == "text":
                        continue
                    text = _na_masked(frame[c])
                    filled = text.dropna()
                    if not len(filled):
                        continue
                    if kinds[c] in (None, "bool") and filled.isin(_TRUE_WORDS | _FALSE_WORDS).all():
                        kinds[c] = "bool"
                        continue
                    if kinds[c] == "bool" or pd.to_numeric(filled, errors="coerce").isna().any():
                        kinds[c] = "text"
                    else:
                        kinds[c] = "numeric"
            # a column with no filled field is float64 NaN in pandas
            self._kinds.update({c: k or "numeric" for c, k in kinds.items()})
        return self._kinds

    def _csv_batches(self, cols, complete, limit):
        kinds = self._csv_kinds([c for c in cols if c not in self.text_columns])
        for start, frame in self._arrow_batches(cols, limit):
            out = {}
            for c in cols:
                text = _na_masked(frame[c])
                if c in self.text_columns or kinds[c] == "text":
                    out[c] = text.astype(object)
                elif kinds[c] == "bool":
                    values = text.map({**{w: True for w in _TRUE_WORDS}, **{w: False for w in _FALSE_WORDS}})
                    out[c] = values.astype(bool) if values.notna().all() else values.astype(object)
                else:
                    numeric = pd.to_numeric(text, errors="raise") if len(text) else text.astype(np.float64)
                    out[c] = numeric
            yield Batch(start, complete(pd.DataFrame(out, index=pd.RangeIndex(len(frame)), columns=cols)))


def _na_masked(series: pd.Series) -> pd.Series:
    """Text fields with pandas' missing-value words as NaN (as pandas reads them)."""
    text = series.astype(object)
    return text.where(~text.isin(NA_WORDS) & text.notna(), np.nan)


def as_source(table, *, batch_rows: int | None = None) -> TableSource | None:
    """``table`` as a TableSource: a DataFrame is wrapped (read in batches), a source is
    itself (with ``batch_rows`` when given), None stays None.

    >>> import pandas as pd
    >>> as_source(pd.DataFrame({"x": [1]})).rows
    1
    """
    if table is None:
        return None
    if isinstance(table, TableSource):
        return table if batch_rows is None else table.replace(batch_rows=batch_rows)
    if isinstance(table, pd.DataFrame):
        return TableSource.of_frame(table, batch_rows=batch_rows)
    raise TypeError(f"a table is a pandas DataFrame or a TableSource, not {type(table).__name__}")


def as_frame(table, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """``table`` as one DataFrame (a source read whole: for analyses that need every row).

    >>> import pandas as pd
    >>> as_frame(TableSource.of_frame(pd.DataFrame({"x": [1, 2]}), batch_rows=1))["x"].tolist()
    [1, 2]
    """
    if table is None or isinstance(table, pd.DataFrame):
        return table
    return table.frame(columns)


__all__ = ["DEFAULT_BATCH_ROWS", "NA_WORDS", "Batch", "TableSource", "as_frame", "as_source"]
