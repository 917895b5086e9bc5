"""smpc: secure multi-party computation for bank consortia.

Three compute parties hold 3-party replicated secret shares; any number of banks input data
and receive only the results they are allowed. See DESIGN.md for the security model and
docs/architecture.md for the layers and where to start reading.

Every party runs the same function (SPMD) with its own context ``ctx``; ``smpc.simulate`` runs
all of them in this process and returns each party's result. How many customers owe more
than 500,000 across three banks, told to bank 0 only::

    >>> import smpc
    >>> def over_limit(ctx, balances=None):
    ...     # bank r passes its own column; every other party passes None for it
    ...     shared = [smpc.share(ctx, balances if ctx.rank == r else None, owner=r, bound=1e9) for r in range(3)]
    ...     total = shared[0] + shared[1] + shared[2]  # per customer, on shares: local and exact
    ...     return (total > 500_000).sum().reveal(to=0)
    >>> books = {0: [300_000.0, 10.0, 0.0], 1: [250_000.0, 20.0, 0.0], 2: [1.0, 2.0, 600_000.0]}
    >>> smpc.simulate(over_limit, inputs={r: {"balances": b} for r, b in books.items()})
    [tensor(2., dtype=torch.float64), None, None]
"""

from smpc import allocator  # noqa: F401 - tunes malloc once, before the first ring tensor is allocated
from smpc.context import Context
from smpc.errors import (
    InputError,
    PartyUnavailable,
    PolicyError,
    ProtocolError,
    ProtocolTimeout,
    RangeError,
    SmpcError,
)
from smpc.secret import SecretTensor, cat, constant, maximum, minimum, share, share_each, stack, where
from smpc.simulation import simulate

__version__ = "0.1.0"

_SUBPACKAGES = ("analyses", "costs", "datasets", "join", "stats")


def __getattr__(name: str):
    """``smpc.stats``, ``smpc.analyses``, ... after a plain ``import smpc``, imported on first
    use so that ``import smpc`` stays light."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"smpc.{name}")
    raise AttributeError(f"module 'smpc' has no attribute {name!r}")


__all__ = [
    "Context",
    "InputError",
    "PartyUnavailable",
    "PolicyError",
    "ProtocolError",
    "ProtocolTimeout",
    "RangeError",
    "SecretTensor",
    "SmpcError",
    "cat",
    "constant",
    "maximum",
    "minimum",
    "share",
    "share_each",
    "simulate",
    "stack",
    "where",
]
