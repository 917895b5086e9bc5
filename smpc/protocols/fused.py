"""Fused protocol kernels: a protocol step's ring arithmetic and its AES-128-CTR masks in one
pass (the C path), each with a torch path beside it that gives the same values.

A draw through ``cryptography`` writes the keystream to memory before a kernel reads it back
(two passes over tensors larger than L2); the C kernels compute the identical keystream with
AES-NI where it is consumed (``PRG.claim`` hands them the key and stream position).
Randomness stays AES-128-CTR keyed by ``smpc.prg``: ``aes_kernels`` turns the kernels on only
after they reproduce ``cryptography``'s stream. The product kernels know the replicated
sharing's roles (party 0's half of a truncated product, the others' finish), which is why
they live here and not in ``smpc.ring``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from smpc.prg import PRG, new_key
from smpc.ring import INT64, Ring, c_kernels, c_kernels_apply

_aes_checked: bool | None = None


def aes_kernels():
    """The C module when its AES-NI keystream kernels can run (C kernels on, the CPU has
    AES-NI, and the known answer matches ``smpc.prg``), else None."""
    global _aes_checked
    kernels = c_kernels()
    if kernels is None:
        return None
    if _aes_checked is None:
        ok = hasattr(kernels, "aes_available") and kernels.aes_available()
        if ok:
            key = new_key()
            got = torch.empty(37, dtype=INT64)
            kernels.aes_fill(got.data_ptr(), key, 3, 37)
            ok = torch.equal(got, PRG(key).int64(40)[3:])
        _aes_checked = bool(ok)
    return kernels if _aes_checked else None


def uniform(ring: Ring, prg, shape: Sequence[int]) -> torch.Tensor:
    """A uniformly random ring tensor: ``ring.random(prg, shape)``, the same values and stream
    position, drawn in C where the AES kernels run."""
    kernels = aes_kernels()
    n = ring.lanes * math.prod(shape)
    claim = prg.claim(n) if kernels is not None and n > 0 else None
    if claim is None:
        return ring.random(prg, shape)
    out = torch.empty(n, dtype=INT64)
    kernels.aes_fill(out.data_ptr(), claim[0], claim[1], n)
    return out.view((ring.lanes, *shape) if ring.lanes > 1 else tuple(shape))


def add_random2_(ring: Ring, z: torch.Tensor, prg1, sign1: int = 1, prg2=None, sign2: int = 1) -> torch.Tensor:
    """z += sign1 * R1 + sign2 * R2 in place, R1 = ``ring.random(prg1, shape(z))`` then R2
    from prg2 (if given): one pass over z, the keystreams computed where they are added
    (``add_zero_sharing_(z, p, m)`` is ``add_random2_(z, p, 1, m, -1)``)."""
    kernels = aes_kernels()
    n = ring.numel(z)
    if kernels is not None and c_kernels_apply(z):
        words = ring.lanes * n
        c1 = prg1.claim(words)
        c2 = prg2.claim(words) if (c1 is not None and prg2 is not None) else None
        if c1 is not None and (prg2 is None or c2 is not None):
            key2, start2 = c2 if c2 is not None else (b"", 0)
            kernels.aes_add_random(z.data_ptr(), n, ring.lanes, c1[0], c1[1], sign1, key2, start2, sign2)
            return z
        if c1 is not None:  # prg2 is not at a word boundary: it draws through cryptography
            kernels.aes_add_random(z.data_ptr(), n, ring.lanes, c1[0], c1[1], sign1, b"", 0, 1)
            return ring.add_random_(z, prg2, sign2)
    ring.add_random_(z, prg1, sign1)
    return z if prg2 is None else ring.add_random_(z, prg2, sign2)


def xor_random2_(z: torch.Tensor, prg1, prg2) -> torch.Tensor:
    """z ^= prg1.int64(n) ^ prg2.int64(n) in place (z contiguous int64 of n words)."""
    kernels = aes_kernels()
    n = z.numel()
    if kernels is not None and n > 0 and z.is_contiguous() and z.dtype == INT64:
        c1 = prg1.claim(n)
        if c1 is not None:
            c2 = prg2.claim(n)
            if c2 is not None:
                kernels.aes_xor_random(z.data_ptr(), n, c1[0], c1[1], c2[0], c2[1])
                return z
            first = torch.empty(n, dtype=INT64)
            kernels.aes_fill(first.data_ptr(), c1[0], c1[1], n)
            z ^= first
            prg2.xor_into(z)
            return z
    prg1.xor_into(z)
    prg2.xor_into(z)
    return z


def rss_product_random(ring: Ring, acc: torch.Tensor | None, x1, x2, y1, y2, prg1=None, sign1: int = 1, prg2=None,
                       sign2: int = 1) -> torch.Tensor:
    """[acc +] ``ring.rss_product(x1, x2, y1, y2)`` + sign1 * R1 + sign2 * R2 (R as in
    ``add_random2_``; a None prg adds nothing), into acc (in place) or a fresh tensor: the
    C path is one pass with the keystreams computed where they are added."""
    kernels = aes_kernels() if ring.lanes == 2 else None
    if kernels is not None and c_kernels_apply(x1, x2, y1, y2, *(() if acc is None else (acc,))):
        n = ring.numel(x1)
        c1 = prg1.claim(2 * n) if prg1 is not None else (b"", 0)
        if c1 is not None:  # (None: prg1 off a word boundary, nothing claimed: torch path)
            c2 = prg2.claim(2 * n) if prg2 is not None else (b"", 0)
            k2 = c2 if c2 is not None else (b"", 0)
            out = torch.empty_like(x1) if acc is None else acc
            kernels.rss_product_random128(out.data_ptr(), int(acc is not None), x1.data_ptr(), x2.data_ptr(),
                                          y1.data_ptr(), y2.data_ptr(), n, c1[0], c1[1], sign1, k2[0], k2[1], sign2)
            return out if c2 is not None else ring.add_random_(out, prg2, sign2)
    t = ring.rss_product(x1, x2, y1, y2)
    out = t if acc is None else ring.add_(acc, t)
    if prg1 is not None:
        add_random2_(ring, out, prg1, sign1, prg2, sign2)
    elif prg2 is not None:
        add_random2_(ring, out, prg2, sign2)
    return out


def rss_product_truncated(
    ring: Ring, x1, x2, y1, y2, d: int, prg_a, prg_b, prg_mask
) -> tuple[torch.Tensor, torch.Tensor]:
    """(message, mask) of party 0 in a truncated product: z = ``rss_product(x1, x2, y1, y2)``
    + R_a + R_b, mask = R from prg_mask (drawn after the other two), message = (z >>> d) -
    mask. The C path is one pass (z never stored)."""
    kernels = aes_kernels() if ring.lanes == 2 else None
    aligned = all(p.bytes_drawn % 8 == 0 for p in (prg_a, prg_b, prg_mask))  # claims succeed
    if kernels is not None and aligned and c_kernels_apply(x1, x2, y1, y2) and d < 128:
        n = ring.numel(x1)
        ca, cb, cm = prg_a.claim(2 * n), prg_b.claim(2 * n), prg_mask.claim(2 * n)
        message, mask = torch.empty_like(x1), torch.empty_like(x1)
        kernels.rss_product_trunc128(message.data_ptr(), mask.data_ptr(), x1.data_ptr(), x2.data_ptr(),
                                     y1.data_ptr(), y2.data_ptr(), n, d, *ca, *cb, *cm)
        return message, mask
    z = rss_product_random(ring, None, x1, x2, y1, y2, prg_a, 1, prg_b, 1)
    mask = uniform(ring, prg_mask, ring.shape(z))
    return ring.sub_(ring.rshift_logical_(z, d), mask), mask


def add_truncate_negated_(ring: Ring, a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    """a = -((-(a + b)) >>> d) in place (one C pass on ring128)."""
    if ring.lanes == 2 and c_kernels_apply(a, b) and 0 <= d < 128:
        c_kernels().add_truncate_negated128(a.data_ptr(), a.data_ptr(), b.data_ptr(), ring.numel(a), d)
        return a
    return ring.truncate_negated_(ring.add_(a, b), d)
