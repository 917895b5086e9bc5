"""Reading one bank's table file (CSV or Parquet), the same way for ``smpc analyze`` and the
party service.

A CSV file must be UTF-8 text: one that is not is refused with the offset of its first
undecodable byte from the start of the file, and its line (pandas' own error counts from the
start of a field or a buffer, so it said "position 0" for a byte deep in the file). Its
bytes are checked whichever columns are then read, so a file is accepted or refused alike
by both. An empty file (no header either) is a table of zero rows, like a header-only one.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from smpc.errors import InputError

_CHECK_CHUNK = 1 << 20


def table_format(path: Path) -> str:
    """``csv`` or ``parquet`` by the file's extension; InputError for anything else."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ""):
        return "csv"
    raise InputError(f"{path} is neither CSV nor Parquet (by its extension)")


def check_utf8(path: Path, where: str) -> None:
    """InputError naming the byte offset and line of the first byte of ``path`` that is not
    UTF-8; read in chunks, so a large file is not held in memory for it."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, newlines = 0, 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHECK_CHUNK)
            pending = len(decoder.getstate()[0])  # bytes of a sequence begun in the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                seen = exc.object  # what the decoder saw: the pending bytes, then the chunk
                at = offset - pending + exc.start
                line = newlines + seen[:exc.start].count(b"\n") + 1
                raise InputError(
                    f"{where}: {path.name} is not UTF-8 text: byte 0x{seen[exc.start]:02x} at byte offset {at} "
                    f"(line {line}: {exc.reason}); save the file as UTF-8") from None
            if not chunk:
                return
            newlines += chunk.count(b"\n")
            offset += len(chunk)


def read_table(path: Path, where: str, *, fmt: str | None = None, columns: Sequence[str] | None = None,
               text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The file's table (only ``columns``, when given); ``text_columns`` of a CSV are read as
    text. InputError, starting with ``where``, for a file that cannot be read."""
    fmt = fmt or table_format(path)
    try:
        if fmt == "csv":
            check_utf8(path, where)
            return pd.read_csv(path, usecols=None if columns is None else list(columns),
                               dtype={c: str for c in text_columns}, encoding="utf-8")
        return pd.read_parquet(path, columns=None if columns is None else list(columns))
    except InputError:
        raise
    except pd.errors.EmptyDataError:  # no header either: zero rows, as a header-only file
        return pd.DataFrame(columns=list(columns or []))
    except Exception as exc:  # noqa: BLE001 - any reader failure is an input problem for the file's owner
        raise InputError(f"{where}: cannot read {path.name} as {fmt} ({exc})") from None
