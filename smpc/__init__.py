"""smpc: secure multi-party computation for bank consortia.

Three compute parties hold 3-party replicated secret shares; any number of banks input data
and receive only the results they are allowed. See DESIGN.md for the security model.
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
