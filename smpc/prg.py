"""Cryptographically secure pseudo-random streams of ring elements.

Everything a party's view depends on comes from here: AES-128 in counter mode (the
`cryptography` package, AES-NI), keyed by 16 bytes from ``os.urandom`` or agreed between a
pair of parties at session start. torch, numpy and ``random`` generators are never used for
shares, masks or seeds.
"""

from __future__ import annotations

import os

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 16
_ZERO_CHUNK = bytes(1 << 22)  # encrypting zeros yields the raw keystream


def new_key() -> bytes:
    """A fresh 128-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


class PRG:
    """One AES-128-CTR keystream. Two parties holding the same key draw identical values as
    long as they make the same sequence of calls, which the SPMD programs guarantee."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError(f"PRG key must be {KEY_BYTES} bytes, got {len(key)}")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self.bytes_drawn = 0

    def bytes(self, n: int) -> bytearray:
        """n keystream bytes in a fresh writable buffer."""
        out = bytearray(n + 15)  # update_into wants block_size - 1 spare bytes
        view = memoryview(out)
        done = 0
        while done < n:
            step = min(n - done, len(_ZERO_CHUNK))
            self._encryptor.update_into(_ZERO_CHUNK[:step], view[done:])
            done += step
        self.bytes_drawn += n
        return out

    def int64(self, n: int) -> torch.Tensor:
        """n uniformly random int64 values (uniform bit patterns, i.e. uniform in Z_2^64)."""
        if n == 0:
            return torch.empty(0, dtype=torch.int64)
        return torch.frombuffer(self.bytes(8 * n), dtype=torch.int64, count=n)


def private_prg() -> PRG:
    """A stream known to this process only."""
    return PRG(new_key())
