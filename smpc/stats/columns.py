"""Secret columns: values plus an availability mask, horizontally partitioned across banks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from smpc.errors import InputError
from smpc.secret import SecretTensor, cat, share


@dataclass
class Column:
    """A secret column over all banks' rows.

    ``values`` is zero wherever the value is missing; ``present`` is a secret 0/1 (integer
    mode) availability mask, as pandas' ``skipna`` needs. Which rows are missing stays
    secret; only the counts a statistic declares are revealed.
    """

    values: SecretTensor
    present: SecretTensor
    name: str = "column"

    @property
    def ctx(self):
        return self.values.ctx

    @property
    def frac_bits(self) -> int:
        return self.values.frac_bits

    @property
    def bound(self) -> float:
        return self.values.bound


def _local_array(data, who: str) -> np.ndarray:
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{who}: values are not numeric") from None
    if array.ndim != 1:
        raise InputError(f"{who}: a column must be one-dimensional, got shape {array.shape}")
    if np.isinf(array).any():
        raise InputError(f"{who}: value at position {int(np.flatnonzero(np.isinf(array))[0])} is infinite")
    return array


def share_column(
    ctx,
    data,
    owner: int,
    *,
    bound: float,
    frac_bits: int | None = None,
    name: str = "column",
) -> Column:
    """Secret-share one bank's column (NaN = missing) from rank ``owner``.

    Other ranks pass ``data=None``. The owner replaces missing values by 0 and shares a 0/1
    availability mask beside them. Leakage: the number of rows of this bank.
    Cost: 2 rounds; 2 ring elements per row from the owner for each of values and mask.
    """
    values = present = None
    if ctx.rank == owner:
        who = f"{ctx.name_of(owner)}, column '{name}'"
        array = _local_array(data, who)
        missing = np.isnan(array)
        values = torch.tensor(np.where(missing, 0.0, array))
        present = torch.tensor((~missing).astype(np.int64))
    secret_values = share(ctx, values, owner, bound=bound, frac_bits=frac_bits, name=name)
    secret_present = share(ctx, present, owner, bound=1, frac_bits=0, name=f"{name} (mask)")
    return Column(secret_values, secret_present, name)


def concat(parts: list[Column]) -> Column:
    """The consortium's column: every bank's rows after one another (local)."""
    if not parts:
        raise InputError("no column parts to combine")
    return Column(cat([p.values for p in parts]), cat([p.present for p in parts]), parts[0].name)
