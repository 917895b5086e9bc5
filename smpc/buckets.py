"""Bucketed joins: split a private join into K independent MPC sessions on ~n/K rows each.

Each bank puts every one of its (distinct, hashed) join keys into one of K buckets by a keyed
hash, so that the same customer lands in the same bucket at every bank; bucket b of every
bank is then joined in its own session (its own keys, shuffle, sort and scans), and only the
merged outputs are revealed. Sessions share nothing, so they run concurrently on worker
processes (``smpc.workers``), and each sorts n/K rows: log2(n/K) quicksort depth instead of
log2(n).

- Bucket key. The bucket hash (AES-128 as a pseudorandom function) is keyed by ``bucket_key(salt)`` = HMAC-SHA256(salt,
  "smpc-join-buckets-v1"), a key derived from the consortium's secret join salt (the same
  secret every bank's configuration holds for ``join.hash_ids``) with its own domain label,
  so the bucket of a customer says nothing about its join key and vice versa; without the
  salt nobody can compute a customer's bucket.
- Padding. Bucket sizes would tell the compute parties how a bank's customers spread over
  the buckets. Every bank pads each of its buckets to a public size ``pad_rows(n, K)`` that
  depends only on its number of distinct customers n (which the join already reveals) and K,
  with dummy rows: keys in a reserved space (top bit set; real keys have it cleared) that no
  real key can equal, distinct across banks, and a value that can never be flagged nor add
  to any total. The pad is the smallest size P such that, for n distinct ids hashed
  uniformly into K buckets, K * Pr[Binomial(n, 1/K) > P] <= 2^-40 (a Chernoff bound with
  the exact relative entropy, computed by ``overflow_bound``): a bank whose bucket exceeds
  P refuses before anything is shared (``split_rows``), which for distinct ids happens with
  probability at most 2^-40 per bank and job.
- Choosing K (``choose_buckets``): 1 for one worker (the single-session join, unchanged);
  otherwise the smallest multiple of the workers that keeps a bank's expected bucket at or
  below ``BUCKET_ROWS`` rows, so every worker gets the same number of sessions and a
  session's memory stays bounded whatever the row count.

Leakage beyond the single-session join: none with padding (each bucket's size is a public
function of n and K); a refusal for overflow says that a bank's ids fell unevenly, which for
distinct ids has probability <= 2^-40.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from smpc.errors import InputError
from smpc.join import ROW_BITS, bank_bits, salt_key
from smpc.ring import RING64
from smpc.sharing import N_COMPUTE, ArithmeticShares

BUCKET_ROWS = 2**18
"""Expected rows of one bank in one bucket that ``choose_buckets`` aims at (memory per session)."""
OVERFLOW_LOG2 = -40
"""A bank's padded buckets overflow with probability at most 2^OVERFLOW_LOG2 (distinct ids)."""
RESERVED_BIT = 1 << 63
"""Set in dummy keys only: real keys of a bucketed join have it cleared."""
_LABEL = b"smpc-join-buckets-v1"


def bucket_key(salt: str | bytes) -> bytes:
    """The bucket hash's key: HMAC-SHA256 of a fixed label under the consortium's join salt.

    >>> bucket_key("s") == bucket_key(b"s") and len(bucket_key("s")) == 32
    True
    """
    return hmac.new(salt_key(salt), _LABEL, hashlib.sha256).digest()


def bucket_of(keys: np.ndarray, buckets: int, salt: str | bytes) -> np.ndarray:
    """The bucket (0..buckets-1) of every 64-bit join key (``join.hash_ids``): the first 8
    bytes of AES-128 under ``bucket_key(salt)`` (a pseudorandom function of the key, one
    vectorised call for all rows) modulo ``buckets``; the same key gets the same bucket at
    every bank.

    >>> import numpy as np
    >>> b = bucket_of(np.arange(1000, dtype=np.int64), 4, "salt")
    >>> sorted(set(b.tolist())), bool(abs((b == 0).sum() - 250) < 60)
    ([0, 1, 2, 3], True)
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if buckets == 1 or keys.size == 0:
        return np.zeros(keys.size, dtype=np.int64)
    blocks = np.zeros((keys.size, 2), dtype="<u8")
    blocks[:, 0] = keys.view(np.uint64)
    # one block per distinct key: ECB is the PRF applied blockwise, nothing is encrypted here
    aes = Cipher(algorithms.AES(bucket_key(salt)[:16]), modes.ECB()).encryptor()  # noqa: S305
    words = np.frombuffer(aes.update(blocks.tobytes()) + aes.finalize(), dtype="<u8").reshape(-1, 2)[:, 0]
    return (words % np.uint64(buckets)).astype(np.int64)


def overflow_bound(n: int, buckets: int, pad: int) -> float:
    """log2 of an upper bound on Pr[some bucket gets more than ``pad`` of n distinct ids],
    ids in uniformly random buckets: buckets * exp(-n D(a || p)) with a = (pad + 1) / n and
    p = 1/buckets + 2^-64 (the modulo's bias), the Chernoff bound with the exact relative
    entropy D; -inf when pad >= n.

    >>> overflow_bound(10**6, 4, 253_500) < -40 < overflow_bound(10**6, 4, 252_000)
    True
    """
    if pad >= n:
        return -math.inf
    p = min(1.0, 1.0 / buckets + 2.0**-64)
    a = (pad + 1) / n
    if a <= p:
        return math.log2(buckets)
    d = a * math.log(a / p) + ((1 - a) * math.log((1 - a) / (1 - p)) if a < 1 else 0.0)
    return math.log2(buckets) - n * d / math.log(2)


def pad_rows(n: int, buckets: int) -> int:
    """The public size every bucket of a bank with ``n`` distinct ids is padded to: the
    smallest pad with ``overflow_bound`` <= ``OVERFLOW_LOG2`` (n itself for one bucket or
    few ids).

    >>> pad_rows(10, 4), pad_rows(7, 1), pad_rows(0, 4)
    (10, 7, 0)
    >>> 250_000 < pad_rows(10**6, 4) < 254_000
    True
    """
    if buckets == 1 or n == 0:
        return n
    lo, hi = -(-n // buckets), n  # the bound holds at hi (-inf); find the first pad where it holds
    while lo < hi:
        mid = (lo + hi) // 2
        if overflow_bound(n, buckets, mid) <= OVERFLOW_LOG2:
            hi = mid
        else:
            lo = mid + 1
    return lo


def choose_buckets(rows: int, workers: int) -> int:
    """K for a job whose largest bank has ``rows`` distinct ids, on ``workers`` workers per
    party: 1 for one worker; else workers * ceil(rows / (workers * BUCKET_ROWS)).

    >>> choose_buckets(10**6, 1), choose_buckets(10**6, 2), choose_buckets(100, 2), choose_buckets(10**7, 8)
    (1, 4, 2, 40)
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return 1
    return workers * max(1, -(-int(rows) // (workers * BUCKET_ROWS)))


@dataclass
class BankBuckets:
    """One bank's rows split into buckets and padded: ``keys[b]`` (P,) and ``values[b]``
    (P, k) for bucket b, real rows first; ``rows[b]`` the positions (in the bank's input) of
    bucket b's real rows; ``pad`` = P."""

    keys: list[np.ndarray]
    values: list[np.ndarray]
    rows: list[np.ndarray]
    pad: int


def split_rows(party: str, keys: np.ndarray, values: np.ndarray, buckets: int, salt: str | bytes,
               bank_index: int, n_banks: int, dummy_value: np.ndarray) -> BankBuckets:
    """A bank's distinct join keys (n,) and value rows (n, k) split into ``buckets`` padded
    buckets (see the module docstring), inside the bank before anything is shared.

    Real keys get the reserved top bit cleared; dummy j of bank i has key RESERVED_BIT |
    (i << ROW_BITS | j) << bank_bits, distinct from every real key and every other bank's
    dummies (also once the join clears the low bank bits), and the value row
    ``dummy_value`` (k,). ``InputError`` naming the bank, before any share moves, when a
    bucket would exceed the public pad.

    >>> import numpy as np
    >>> out = split_rows("bank_a", np.arange(6, dtype=np.int64), np.ones((6, 1), np.int64), 2, "s", 0, 3,
    ...                  np.zeros(1, np.int64))
    >>> out.pad, [len(k) for k in out.keys], sum(len(r) for r in out.rows)
    (6, [6, 6], 6)
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    dummy_value = np.asarray(dummy_value, dtype=np.int64).reshape(-1)
    values = np.asarray(values, dtype=np.int64).reshape(len(keys), dummy_value.size)
    n = len(keys)
    pad = pad_rows(n, buckets)
    which = bucket_of(keys, buckets, salt)
    sizes = np.bincount(which, minlength=buckets)
    if sizes.size and int(sizes.max()) > pad:
        # the count itself stays with the bank: the refusal reaches every party
        raise InputError(
            f"{party}: its customers fall too unevenly into the {buckets} buckets: one holds more than the public "
            f"pad of {pad} rows (for distinct ids this happens with probability <= 2^{OVERFLOW_LOG2}); rerun with "
            "fewer buckets"
        )
    real = keys & np.int64(RESERVED_BIT - 1)
    shift = bank_bits(n_banks)
    out = BankBuckets([], [], [], pad)
    for b in range(buckets):
        rows = np.flatnonzero(which == b)
        extra = pad - rows.size
        dummy = (np.int64(bank_index) << np.int64(ROW_BITS)) | np.arange(extra, dtype=np.int64)
        dummy = (dummy << np.int64(shift)) | np.int64(-(2**63))
        out.keys.append(np.concatenate([real[rows], dummy]))
        out.values.append(np.concatenate([values[rows], np.tile(dummy_value.reshape(1, -1), (extra, 1))]))
        out.rows.append(rows)
    return out


@dataclass(frozen=True)
class BucketedAnalysis:
    """An analysis in bucket sessions, as ``smpc.workers.run_bucketed`` drives it:

    - ``prepare(table, party, bank_index, n_banks, buckets, **params)`` -> (state,
      ``BankBuckets``): one bank's side, in the clear, before anything is shared;
    - ``public(n_banks, **params)`` -> the public keyword arguments of every session;
    - ``session(ctx, owners, keys, values, **public)`` -> {"own": what this bank gets of
      its rows, "shared": this compute party's shares to merge}: one bucket's MPC session;
    - ``merge(ctx, owners, shared, **params)``: one more session on every rank, given its
      "shared" parts of all buckets, that opens the merged outputs only;
    - ``finish(state, buckets, own, merged, party, **params)`` -> the bank's result.

    >>> spec = BucketedAnalysis(*[print] * 5)
    >>> spec.session is print
    True
    """

    prepare: Callable
    public: Callable
    session: Callable
    merge: Callable
    finish: Callable


def open_shared(ctx, first: torch.Tensor | None, second: torch.Tensor | None,
                recipients: list[int]) -> np.ndarray | None:
    """Open a ring64 RSS value (``first``, ``second``: this compute party's components) to
    ``recipients`` only, in one round: each compute party sends its first component to every
    input-party recipient, and to its successor when that is a recipient. Every rank calls
    it; recipients get the int64 values, everyone else None (and no message).

    >>> import smpc, torch
    >>> from smpc.sharing import ArithmeticShares
    >>> def job(ctx):
    ...     x = smpc.share(ctx, torch.tensor([5.0], dtype=torch.float64) if ctx.rank == 0 else None, owner=0)
    ...     return open_shared(ctx, x.shares.first, x.shares.second, [1])
    >>> [None if r is None else r.tolist() for r in smpc.simulate(job, ring=64, frac_bits=0)]
    [None, [5], None]
    """
    rank = ctx.rank
    sends = {}
    if ctx.is_compute:
        for r in recipients:
            if r >= N_COMPUTE or r == (rank + 1) % N_COMPUTE:
                sends[r] = first.reshape(-1)
    if rank in recipients:
        senders = [(rank - 1) % N_COMPUTE] if ctx.is_compute else list(range(N_COMPUTE))
    else:
        senders = []
    got = ctx.exchange("bucket-open", sends=sends, recv_from=senders)
    if rank not in recipients:
        return None
    if ctx.is_compute:
        total = first.reshape(-1) + second.reshape(-1) + got[senders[0]]
    else:
        total = got[0] + got[1] + got[2]
    return total.numpy().copy()


def sum_shares(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> ArithmeticShares:
    """The sum of ring64 RSS values given as (first, second) components (local).

    >>> import torch
    >>> s = sum_shares([(torch.tensor([1]), torch.tensor([2])), (torch.tensor([3]), torch.tensor([4]))])
    >>> s.first.tolist(), s.second.tolist()
    ([4], [6])
    """
    first = sum((p[0] for p in parts[1:]), parts[0][0].clone())
    second = sum((p[1] for p in parts[1:]), parts[0][1].clone())
    return ArithmeticShares(RING64, first, second)


__all__ = [
    "BUCKET_ROWS",
    "BankBuckets",
    "BucketedAnalysis",
    "OVERFLOW_LOG2",
    "RESERVED_BIT",
    "bucket_key",
    "bucket_of",
    "choose_buckets",
    "open_shared",
    "overflow_bound",
    "pad_rows",
    "split_rows",
]
