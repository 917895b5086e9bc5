"""Errors a bank operator can act on.

Every error names where it happened (party, column, position) and never carries secret data.
"""

from __future__ import annotations


class SmpcError(Exception):
    """Base class of every error raised by smpc."""


class InputError(SmpcError, ValueError):
    """An input value cannot be shared: NaN, infinity, wrong type or shape, bad column."""


class RangeError(SmpcError, ArithmeticError):
    """A value or an operation's worst-case result does not fit the ring at the required safety."""


class PolicyError(SmpcError, PermissionError):
    """A party's policy refuses the request; nothing was computed."""


class PartyUnavailable(SmpcError, ConnectionError):
    """A peer died, aborted or cannot be reached; the job was abandoned."""

    def __init__(self, message: str, peer: int | str | None = None):
        super().__init__(message)
        self.peer = peer


class ProtocolTimeout(PartyUnavailable, TimeoutError):
    """A peer did not send an expected message within the timeout."""


class ProtocolError(SmpcError, RuntimeError):
    """Parties disagree on the protocol step (a bug, or a peer running other code)."""
