"""What the catalogue's analyses share: the checks of one bank's own table, the public caps on
what a bank contributes, bounded views of shared aggregates, and how a suppressed cell reads.

The checks run on a bank's own rows before anything is shared. A refusal travels to the
coordinator, the other banks and the requester, so its message names the bank, the column,
the row and the problem, but never the value in the cell.

A bank's table is a pandas DataFrame or a ``smpc.sources.TableSource`` (a file read in
batches); ``table_batches`` reads either in batches, and a check run inside
``rows_from(start)`` names rows counted from the start of the table, not of the batch, so
a refusal reads the same whichever way the rows arrived. ``exact_sum`` and ``exact_dot``
add int64 units of a batch exactly (limbs of 18 bits, no float, no wrap), into Python ints.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from smpc.errors import InputError, RangeError, SmpcError
from smpc.fixedpoint import check_decimal_scale, decimal_units
from smpc.secret import SecretTensor
from smpc.sources import as_frame, as_source

if TYPE_CHECKING:
    from smpc.analyses.disclosure import Rules
    from smpc.analyses.registry import Param

MAX_ROWS_PER_BANK = 2**30
"""Public cap on one bank's rows; it bounds the shared aggregates (sums of squares too)."""


# ----- reading one bank's table in batches --------------------------------------------------
_FIRST_ROW: contextvars.ContextVar[int] = contextvars.ContextVar("smpc_first_row", default=0)


@contextmanager
def rows_from(start: int):
    """Inside: ``check_rows`` counts rows from ``start`` (0-based), the position of the
    batch being checked in its table.

    >>> import numpy as np
    >>> with rows_from(1000):
    ...     check_rows(np.array([False, True]), "bank_a", "x", "is bad")
    Traceback (most recent call last):
    smpc.errors.InputError: bank_a, column 'x': row 1002 is bad
    """
    token = _FIRST_ROW.set(int(start))
    try:
        yield
    finally:
        _FIRST_ROW.reset(token)


def table_batches(table, party: str, columns: Sequence[str], *, batch_rows: int | None = None
                  ) -> Iterator[tuple[int, pd.DataFrame]]:
    """(start row, DataFrame of ``columns``) per batch of one bank's table (a DataFrame or a
    ``TableSource``); ``InputError`` naming the party for a missing column, before any row
    is read. At least one batch, empty for a table without rows.

    >>> import pandas as pd
    >>> [(s, f["x"].tolist()) for s, f in table_batches(pd.DataFrame({"x": [1, 2, 3]}), "b", ["x"], batch_rows=2)]
    [(0, [1, 2]), (2, [3])]
    """
    source = as_source(table, batch_rows=batch_rows)
    have = source.columns
    for c in columns:
        if c not in have:
            raise InputError(f"{party}: column '{c}' is missing from its data (it has: {', '.join(have[:20])})")
    for batch in source.batches(list(dict.fromkeys(columns))):
        yield batch.start, batch.frame


def whole_table(table, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of one bank's table as one DataFrame, for the steps that need every row at
    once (a customer cap, a sort): their memory grows with the rows.

    >>> import pandas as pd
    >>> whole_table(pd.DataFrame({"x": [1], "y": [2]}), ["x"]).columns.tolist()
    ['x', 'y']
    """
    if isinstance(table, pd.DataFrame):
        return table
    return as_frame(table, [c for c in dict.fromkeys(columns) if c in table.columns])


_LIMB_BITS = 18
_LIMB_MASK = (1 << _LIMB_BITS) - 1
_EXACT_CHUNK = 1 << 24  # 2^24 products of two 19-bit limbs sum below 2^62
_UNIT_LIMIT = 1 << 54


def _limbs(x: np.ndarray) -> list[np.ndarray]:
    x = np.asarray(x, dtype=np.int64)
    if len(x) and int(np.abs(x).max()) >= _UNIT_LIMIT:
        raise RangeError(f"a unit beyond 2^54 cannot be summed exactly in int64 limbs (got {int(np.abs(x).max())})")
    return [x & _LIMB_MASK, (x >> _LIMB_BITS) & _LIMB_MASK, x >> (2 * _LIMB_BITS)]


def exact_sum(x: np.ndarray) -> int:
    """The exact sum of int64 values below 2^54 in magnitude, as a Python int.

    >>> exact_sum(np.array([2**53 - 1] * 4, dtype=np.int64)) == 4 * (2**53 - 1)
    True
    """
    total = 0
    for at in range(0, len(x), _EXACT_CHUNK):
        for k, limb in enumerate(_limbs(x[at : at + _EXACT_CHUNK])):
            total += int(limb.sum(dtype=np.int64)) << (_LIMB_BITS * k)
    return total


def exact_dot(x: np.ndarray, y: np.ndarray) -> int:
    """The exact sum of x_i * y_i for int64 values below 2^54 in magnitude, as a Python int
    (products up to 2^108 and their sums never wrap).

    >>> v = np.array([-(2**53 - 1), 3], dtype=np.int64)
    >>> exact_dot(v, v) == (2**53 - 1) ** 2 + 9
    True
    """
    total = 0
    for at in range(0, len(x), _EXACT_CHUNK):
        a, b = _limbs(x[at : at + _EXACT_CHUNK]), _limbs(y[at : at + _EXACT_CHUNK])
        for i, la in enumerate(a):
            for j, lb in enumerate(b):
                total += int(np.dot(la, lb)) << (_LIMB_BITS * (i + j))
    return total


# ----- checks of one bank's table ---------------------------------------------------------
def table_column(table: pd.DataFrame, party: str, column: str) -> pd.Series:
    """``table[column]``; ``InputError`` naming the party and the columns it has otherwise."""
    if column not in table.columns:
        have = ", ".join(map(str, table.columns[:20]))
        raise InputError(f"{party}: column '{column}' is missing from its data (it has: {have})")
    return table[column]


def check_rows(bad, party: str, column: str, problem: str | Callable[[int], str],
               error: type[SmpcError] = InputError) -> None:
    """Refuse the column if any row is ``bad`` (booleans, one per row): ``error`` naming the
    party, the column and the first such row (counted from 1, from the table's first row
    inside ``rows_from``), with ``problem`` (or ``problem(row)`` for the 0-based row of
    ``bad``) saying what is wrong with it."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = problem(row) if callable(problem) else problem
        raise error(f"{party}, column '{column}': row {row + 1 + _FIRST_ROW.get()} {what}")


def check_row_count(party: str, rows: int) -> None:
    """A bank contributes at most ``MAX_ROWS_PER_BANK`` rows: the bounds of every shared
    aggregate rest on it."""
    if rows > MAX_ROWS_PER_BANK:
        raise InputError(f"{party}: {rows} rows exceed the {MAX_ROWS_PER_BANK} rows a bank may contribute")


def default_flags(table: pd.DataFrame, party: str, label: str, positive: str | None) -> np.ndarray:
    """0/1 default flags (int64) of one bank's ``label`` column; ``InputError`` naming the
    party, column, row and problem for anything that is not a clean flag or label."""
    col = table_column(table, party, label)
    check_rows(col.isna(), party, label, "is empty")
    if positive is not None:
        return (col.astype(str) == positive).to_numpy(dtype=np.int64)
    numeric = pd.to_numeric(col, errors="coerce")
    check_rows(numeric.isna(), party, label,
               "is not numeric; a 0/1 flag column is expected (or pass positive=<label> for a labelled column)")
    values = numeric.to_numpy(dtype=np.float64)
    check_rows((values != 0) & (values != 1), party, label, "is not 0 or 1")
    return values.astype(np.int64)


def check_amount_scale(column: str, decimals: int, bound: float) -> None:
    """The public scale of an amount column (``fixedpoint.check_decimal_scale``)."""
    check_decimal_scale(decimals, bound, f"column '{column}'")


def amount_units(table: pd.DataFrame, party: str, column: str, decimals: int, bound: float) -> np.ndarray:
    """Amounts as exact integers of 10^-decimals (cents for 2); ``InputError`` for empty,
    non-numeric or over-precise values, ``RangeError`` beyond ``bound``.

    A value is over-precise unless it is the float nearest some k / 10^decimals: then
    k / 10^decimals, correctly rounded, gives the value back (exact for k < 2^53), so
    1234567.891 at 2 decimals is refused however large the amount, not rounded to .89."""
    check_amount_scale(column, decimals, bound)
    col = table_column(table, party, column)
    numeric = pd.to_numeric(col, errors="coerce")
    check_rows(numeric.isna(), party, column, lambda row: "is empty" if pd.isna(col.iloc[row]) else "is not numeric")
    values = numeric.to_numpy(dtype=np.float64)
    check_rows(np.abs(values) > bound, party, column, f"exceeds the declared bound {bound:g}", RangeError)
    units, over_precise = decimal_units(values, decimals)
    check_rows(over_precise, party, column, f"has more than {decimals} decimal places (declare more decimals)")
    return units.astype(np.int64)


# ----- the barrier before anything is published ---------------------------------------------
def inputs_checked(ctx, owners) -> None:
    """Barrier: every bank tells every party that its own input passed its checks.

    A bank whose input fails raises before sending, which aborts the job on every party, so
    nothing that follows (a published value) leaves any bank while another bank's input is
    bad. Cost: 1 round; 1 byte from each bank to each other party. Leakage: none."""
    ok = torch.ones(1, dtype=torch.uint8)
    sends = {r: ok for r in range(ctx.world_size) if r != ctx.rank} if ctx.rank in owners else {}
    ctx.exchange("inputs_checked", sends=sends, recv_from=[o for o in owners if o != ctx.rank])


# ----- shared aggregates ----------------------------------------------------------------------
def bounded_view(x: SecretTensor, bound: float) -> SecretTensor:
    """``x`` under a tighter public bound that holds by construction: values the owners
    computed from their checked rows (a count, a 0/1 flag, one value), shared in one batch
    with larger aggregates. Comparisons need bounds under 2^63, which sums of squares exceed."""
    origin = f"{x.origin or 'an aggregate'} (bounded by {float(bound):.4g})"
    return SecretTensor(x.ctx, x.shares, x.frac_bits, float(bound), origin)


def count_view(x: SecretTensor, owners) -> SecretTensor:
    """Record counts summed over ``owners`` (every bank checked its row count against
    MAX_ROWS_PER_BANK before sharing), with the bound of such a count."""
    return bounded_view(x, len(owners) * MAX_ROWS_PER_BANK)


# ----- results ------------------------------------------------------------------------------
def suppressed(rules: Rules | None = None, **fields) -> dict:
    """What a result says of a cell the disclosure rules suppressed: the ``fields`` that
    stand in for its values (``count=None``), that it is suppressed, and, for a result that
    is one cell, the rules it was decided under (``Rules.metadata``)."""
    return {**fields, "suppressed": True, **(rules.metadata() if rules is not None else {})}


# ----- differentially private releases -------------------------------------------------------
def dp_params() -> list[Param]:
    """The parameters of an analysis that offers a differentially private release
    (``smpc.dp``; docs/dp.md)."""
    from smpc.analyses.registry import Param

    return [
        Param("dp_epsilon", "float",
              description="release with epsilon-differential privacy: discrete Laplace noise drawn by two compute "
                          "parties and added on shares (docs/dp.md); every party debits it from its budget"),
        Param("dp_customer", "column", owner="dp_customer",
              description="with dp_epsilon: the customer id column; each bank keeps at most dp_rows_per_customer "
                          "rows per customer (without it every row is taken to be its own customer); in the party "
                          "service each bank's own [data.NAME.dp] customer"),
        Param("dp_rows_per_customer", "int", default=1, owner="dp_rows_per_customer",
              description="with dp_epsilon: public cap on one customer's rows at one bank; the noise scales with it; "
                          "in the party service the largest [data.NAME.dp] rows_per_customer of the banks"),
    ]


def check_dp(analysis: str, dp_epsilon, dp_customer, dp_rows_per_customer: int) -> None:
    """The privacy parameters, refused by name before any data is read."""
    from smpc import dp

    if dp_epsilon is None:
        if dp_customer is not None:
            raise InputError(f"{analysis}: parameter 'dp_customer' needs dp_epsilon")
        return
    try:
        dp.check_epsilon(dp_epsilon)
    except InputError as e:
        raise InputError(f"{analysis}: {e}") from None
    if dp_rows_per_customer < 1:
        raise InputError(f"{analysis}: parameter 'dp_rows_per_customer' must be >= 1, got {dp_rows_per_customer}")


def dp_metadata(epsilon: float, cap: int, min_cell_size: int) -> dict:
    """What every differentially private result says of its release: the epsilon spent, the
    mechanism, how many parties drew noise, the rows-per-customer cap the noise is scaled to
    and the minimum cell size (applied to the noisy counts)."""
    from smpc import dp

    return {"epsilon_spent": float(epsilon), "mechanism": dp.MECHANISM, "noise_parties": len(dp.NOISE_RANKS),
            "rows_per_customer": cap, "min_cell_size": min_cell_size}


def cap_customer_rows(table: pd.DataFrame, party: str, customer: str | None, cap: int) -> pd.DataFrame:
    """One bank's rows with at most ``cap`` per customer (the first ones in file order), so one
    customer changes any statistic by at most ``cap`` rows' worth: the public sensitivity the
    noise is scaled to. Without a ``customer`` column every row is its own customer."""
    if customer is None:
        return table
    ids = table_column(table, party, customer)
    check_rows(ids.isna(), party, customer, "has no customer id")
    return table[(ids.groupby(ids.astype(str)).cumcount() < cap).to_numpy()]
