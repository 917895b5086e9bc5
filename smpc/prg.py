"""Cryptographically secure pseudo-random streams of ring elements.

Everything a party's view depends on comes from here: AES-128 in counter mode (the
`cryptography` package, AES-NI), keyed by 16 bytes from ``os.urandom`` or agreed between a
pair of parties at session start. torch, numpy and ``random`` generators are never used for
shares, masks or seeds.

Speed: the keystream is written straight into the memory of the torch tensor that is
returned (no intermediate ``bytearray``, whose zero-filling and copy cost as much as the
AES itself), and ``chunks`` hands out the stream piece by piece in a small reused buffer so
a ring kernel can add it into an existing tensor without materialising it
(``smpc.ring.Ring.add_random_``). Hot kernels go further: ``claim`` hands them a stream's
key and position and they compute the same AES-128-CTR blocks with AES-NI where they are
consumed (``smpc.protocols.fused.aes_kernels``, switched on only after reproducing this module's
stream); the keys and the streams are this module's either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 16
_ZERO_CHUNK = memoryview(bytes(1 << 22))  # encrypting zeros yields the raw keystream
_SPARE = 16  # update_into wants block_size - 1 spare bytes after the data it writes
CHUNK_WORDS = 1 << 15  # 256 KiB pieces for ``chunks``: stays in L2 between AES and the add


def new_key() -> bytes:
    """A fresh 128-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def _byte_view(t: torch.Tensor) -> memoryview:
    """A writable byte view of a contiguous CPU tensor's memory."""
    return memoryview(t.numpy()).cast("B")


class PRG:
    """One AES-128-CTR keystream. Two parties holding the same key draw identical values as
    long as they make the same sequence of calls, which the SPMD programs guarantee."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError(f"PRG key must be {KEY_BYTES} bytes, got {len(key)}")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._key = bytes(key)  # for ``claim``: the C kernels compute the same stream
        self.bytes_drawn = 0

    def _fill(self, view: memoryview, n: int) -> None:
        """Write the next n keystream bytes to view[:n] (len(view) >= n)."""
        # update_into wants 15 spare bytes after what it writes: the last 16 bytes go
        # through a small buffer so the destination can be exactly n bytes long
        head = max(0, n - _SPARE) if len(view) < n + _SPARE else n
        done = 0
        while done < head:
            step = min(head - done, len(_ZERO_CHUNK))
            self._encryptor.update_into(_ZERO_CHUNK[:step], view[done:])
            done += step
        if head < n:
            tail = bytearray(2 * _SPARE)
            self._encryptor.update_into(_ZERO_CHUNK[: n - head], tail)
            view[head:n] = tail[: n - head]
        self.bytes_drawn += n

    def bytes(self, n: int) -> bytearray:
        """n keystream bytes in a fresh writable buffer."""
        out = bytearray(n)
        self._fill(memoryview(out), n)
        return out

    def xor_into(self, t: torch.Tensor) -> None:
        """XOR the next ``t.numel()`` int64 stream words into a contiguous int64 tensor in place:
        the stream ``int64(t.numel())`` would draw, without materialising all of it.

        The keystream goes through a small reused buffer and is XORed in by torch. Encrypting
        the tensor's own bytes in place would save that pass, but ``cryptography`` 51 refuses
        ``update_into`` with overlapping input and output, and older releases never promised it.
        """
        if t.dtype != torch.int64 or not t.is_contiguous():
            raise ValueError(f"xor_into needs a contiguous int64 tensor, got {t.dtype} "
                             f"({'contiguous' if t.is_contiguous() else 'not contiguous'})")
        flat = t.view(-1)
        for start, count, words in self.chunks(flat.numel()):
            flat[start : start + count].bitwise_xor_(words[:count])

    def int64(self, n: int) -> torch.Tensor:
        """n uniformly random int64 values (uniform bit patterns, i.e. uniform in Z_2^64)."""
        if n == 0:
            return torch.empty(0, dtype=torch.int64)
        out = torch.empty(n, dtype=torch.int64)
        self._fill(_byte_view(out), 8 * n)
        return out

    def claim(self, n: int) -> tuple[bytes, int] | None:
        """(key, w) for the next n int64 stream words, which are words w .. w + n - 1 of the
        key's AES-128-CTR stream (counter from 0, word w is half w & 1 of block w >> 1), for a
        caller that computes them itself (the C kernels: they add the
        keystream where it is consumed); the stream moves past them as ``int64(n)`` would
        move it. None, drawing nothing, when the stream is not at a word boundary."""
        if self.bytes_drawn % 8:
            return None
        start = self.bytes_drawn // 8
        self.bytes_drawn += 8 * n
        end = self.bytes_drawn
        self._encryptor = _Resume(self, end)
        return self._key, start

    def chunks(self, n: int, scratch: torch.Tensor | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """The next n int64 stream words as (start, count, words) pieces, in order.

        ``words`` is a reused buffer (``scratch`` if given: an int64 tensor of at least
        ``CHUNK_WORDS + 2`` elements) that is overwritten by the next piece, so consume each
        piece before advancing. Draws exactly the stream ``int64(n)`` would.
        """
        if scratch is None:
            scratch = torch.empty(CHUNK_WORDS + _SPARE // 8, dtype=torch.int64)
        size = min(CHUNK_WORDS, scratch.numel() - _SPARE // 8)
        view = _byte_view(scratch)
        start = 0
        while start < n:
            count = min(size, n - start)
            self._fill(view, 8 * count)
            yield start, count, scratch
            start += count


class _Resume:
    """Stands in for a PRG's encryptor after ``claim``: CTR is seekable, so the encryptor
    for the words after the claimed ones is built (at the block holding the position,
    advanced within it) only when a draw through ``cryptography`` comes next."""

    def __init__(self, prg: PRG, position: int):
        self._prg, self._position = prg, position

    def _resume(self):
        encryptor = Cipher(
            algorithms.AES(self._prg._key), modes.CTR((self._position // 16).to_bytes(16, "big"))
        ).encryptor()
        if self._position % 16:
            encryptor.update(bytes(self._position % 16))
        self._prg._encryptor = encryptor
        return encryptor

    def update_into(self, data, buf) -> int:
        return self._resume().update_into(data, buf)

    def update(self, data) -> bytes:
        return self._resume().update(data)


def private_prg() -> PRG:
    """A stream known to this process only."""
    return PRG(new_key())
