"""Every bank's rows secret-shared as one matrix, in two rounds whatever the number of banks."""

from __future__ import annotations

import numpy as np
import torch

from smpc.errors import InputError, SmpcError
from smpc.fixedpoint import encode
from smpc.protocols import arithmetic
from smpc.secret import SecretTensor, cat


def share_rows(ctx, owners, rows, *, width: int, bound: float, frac_bits: int | None = None,
               name: str = "rows") -> tuple[SecretTensor, list[int]]:
    """The rows of every bank in ``owners`` stacked in owner order, as one secret (n, width),
    and every bank's row count (which every party learns, so that ranks without shares know n).

    Each owner passes its own (n_b, width) array (others None); values are checked against
    ``bound`` and encoded at ``frac_bits`` on the owner before anything is sent (errors name
    the bank and ``name``). Leakage: every bank's row count, to every party.
    Cost: 2 rounds: the row counts (``publish_each``), then every bank's shares in one round
    (``protocols.arithmetic.share_inputs``): a compute owner sends 1 ring element per value
    to one party, an input party 1 to each of parties 1 and 2."""
    owners = list(owners)
    f = ctx.frac_bits if frac_bits is None else int(frac_bits)
    encoded = None
    mine = None
    if ctx.rank in owners:
        who = f"{ctx.name_of(ctx.rank)}, {name}"
        if rows is None:
            raise SmpcError(f"{who}: this bank owns rows but passed None")
        array = np.asarray(rows, dtype=np.float64)
        if array.ndim == 1 and width == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2 or array.shape[1] != width:
            raise InputError(f"{who}: rows of shape {array.shape}, where every party expects {width} columns")
        encoded = encode(torch.from_numpy(np.ascontiguousarray(array)), ctx.ring, f, bound, who=who)
        mine = int(array.shape[0])
    counts = [int(c) for c in ctx.publish_each(mine, owners)]
    shares = arithmetic.share_inputs(ctx, encoded, owners, (), shapes=[(c, width) for c in counts])
    parts = [SecretTensor(ctx, s, frac_bits=f, bound=float(bound), origin=f"{ctx.name_of(o)}'s {name}")
             for o, s in zip(owners, shares, strict=True)]
    return cat(parts, dim=0), counts


__all__ = ["share_rows"]
