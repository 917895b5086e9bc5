"""Private join on customer ids inside MPC: hash, share, shuffle, sort, group, and send each
bank the results of its own rows.

Pipeline (every step on secret shares; see each function for its cost):

1. Keys. Inside each bank, every id is normalised (``normalise_ids``: Unicode NFKC, outer
   whitespace removed, case kept, integral numbers written without a decimal point; empty,
   NaN, non-integral or over-long ids and non-printable characters are refused with an
   ``InputError`` naming the bank, the column and the row) and hashed to 64 bits with keyed
   BLAKE2b, the key being a consortium-wide ``salt`` (``hash_ids``). Collision bound: with
   N distinct ids in the whole consortium, two distinct customers share a key with
   probability at most N(N-1)/2^65 (3e6 ids: 2.4e-7), or N(N-1)/2^(65-b) when b key bits
   carry the bank index (unique mode, b = ceil(log2 banks): 3 banks, 3e6 ids: 1e-6); a
   collision would merge the two customers' rows. Keys are never revealed, not even to
   the compute parties.
2. Input. Every bank announces its row count (round 1) and shares its key words (XOR) and
   value columns (additively, in Z_2^64) with the three compute parties (round 2; one
   message per bank and compute party for all columns).
3. Sort. Keys are made distinct with public tie-breaker bits: in unique mode (each bank
   holds at most one row per customer, e.g. after merging its own rows per customer in the
   clear) the bank index fills the key's lowest-ranking bits; otherwise a second word, bank
   index << 40 | row index, is appended. All rows are then sorted by (key, bank[, row])
   with ``smpc.protocols.sort.sort_rows`` (shuffle, then quicksort with opened comparisons:
   leaks nothing beyond the total row count).
4. Group. Adjacent rows are compared (``segmented.adjacent_equal``): ``same_customer`` (and
   ``same_customer_bank`` in the general mode) as secret 0/1 columns; ``totals`` runs
   log-depth segmented scans to give every row its customer's sums.
5. Back to the banks (``to_owners``): result columns are un-sorted (public sigma, local)
   and un-shuffled (the inverse of the secret shuffle: 3 rounds), which brings every row
   back to its public input position; then bank b's rows are opened to bank b only, in one
   round. This is the "second shuffle then reveal (row index, result) to the owner" of the
   design, with the inverse shuffle as the second shuffle: since the rows come back to
   their input order, the row index need not travel and no bank column is opened. A bank
   that is not a recipient receives no message at all in this step.

Leakage of the join itself: every bank's row count (to the compute parties). The analyses
state what their results reveal.

Arithmetic is in Z_2^64 whatever the job's ring: values (cents, counts) must keep their
worst-case group totals below 2^62 (``check_total_bound``), which comparisons on 64-bit
shares need anyway.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from smpc.errors import InputError, ProtocolError, RangeError
from smpc.protocols import boolean
from smpc.protocols.segmented import adjacent_equal, bits_to_arithmetic, group_totals, mul
from smpc.protocols.sort import PackedBits, SortedRows, less_than_words, sort_rows_from, tree_order
from smpc.ring import RING64
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

if TYPE_CHECKING:
    from smpc.context import Context

DEFAULT_SALT = "smpc-consortium-v1"
MAX_ID_LENGTH = 256
ROW_BITS = 40
"""The tie-breaker word is bank index << ROW_BITS | row index: up to 2^40 rows per bank."""
MAX_TOTAL = 2**62
"""Largest |group total| the join's Z_2^64 arithmetic and 64-bit comparisons accept."""
_PERSON = b"smpc-join-id-v1"


# ----- ids -> keys (inside each bank, in the clear) -------------------------------------
def _bad(party: str, column: str, row: int, what: str) -> InputError:
    return InputError(f"{party}, column '{column}': row {row + 1} {what}")


def normalise_id(value, party: str = "bank", column: str = "id", row: int = 0) -> str:
    """One id as its normalised string; ``InputError`` naming the bank, column and row for
    an empty or malformed id (never quoting it: the refusal reaches the other banks).
    Integral numbers (also from float columns, 123.0, below 2^53 where floats are exact)
    become their decimal digits, strings are NFKC-normalised and stripped (case is kept)."""
    if value is None or value is pd.NA or value is pd.NaT:
        raise _bad(party, column, row, "has an empty id")
    if isinstance(value, (bool, np.bool_)):
        raise _bad(party, column, row, "has a true/false value, which is not an id")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            raise _bad(party, column, row, "has an empty id")
        if not math.isfinite(value) or not float(value).is_integer():
            raise _bad(party, column, row, "has a number with a fraction, which is not an id")
        if abs(value) >= 2.0**53:  # distinct ids would have been rounded together
            raise _bad(party, column, row, "has a floating-point number beyond 2^53, which cannot hold an id "
                                           "exactly: store the ids as text")
        return str(int(value))
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(party, column, row, "has bytes that are not UTF-8 text") from None
    if not isinstance(value, str):
        raise _bad(party, column, row, f"has a {type(value).__name__}, which is not an id")
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise _bad(party, column, row, "has an empty id")
    if len(text) > MAX_ID_LENGTH:
        raise _bad(party, column, row, f"has an id of {len(text)} characters (at most {MAX_ID_LENGTH})")
    if not text.isprintable():
        at = next(i for i, ch in enumerate(text) if not ch.isprintable())
        raise _bad(party, column, row, f"has an id with a non-printable character (U+{ord(text[at]):04X}) at "
                                       f"position {at + 1}")
    return text


def normalise_ids(values: Sequence | pd.Series, party: str = "bank", column: str = "id") -> list[str]:
    """Every id of a column normalised (see ``normalise_id``); the first bad one raises."""
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(list(values), dtype=object)
    if array.dtype.kind in "iu":  # integer ids: nothing can be empty or malformed
        return [str(int(v)) for v in array.tolist()]
    items = array.tolist()
    if pd.api.types.infer_dtype(array, skipna=False) == "string":  # all str: the common case
        normalize = unicodedata.normalize
        texts = [normalize("NFKC", v).strip() for v in items]
        if min(map(len, texts), default=1) and max(map(len, texts), default=0) <= MAX_ID_LENGTH:
            if all(map(str.isprintable, texts)):
                return texts
    return [normalise_id(v, party, column, i) for i, v in enumerate(items)]


def table_ids(table: pd.DataFrame, party: str, column: str) -> list[str]:
    """The normalised ids of ``table[column]``; ``InputError`` naming the bank if the column
    is missing or an id is empty or malformed."""
    if column not in table.columns:
        have = ", ".join(map(str, table.columns[:20]))
        raise InputError(f"{party}: column '{column}' is missing from its data (it has: {have})")
    return normalise_ids(table[column], party, column)


def salt_key(salt: str | bytes) -> bytes:
    """The consortium's join salt as a key (at most 64 bytes, BLAKE2b's limit; a longer
    salt is hashed down), refused when empty. ``smpc.buckets`` derives its bucket key from it.

    >>> salt_key("consortium-salt")
    b'consortium-salt'
    """
    key = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if not key:
        raise InputError("the join salt is empty; every bank must use the same non-empty salt")
    if len(key) > 64:  # BLAKE2b keys are at most 64 bytes
        key = hashlib.blake2b(key, digest_size=64, person=_PERSON).digest()
    return key


def hash_ids(ids: Sequence[str], salt: str | bytes = DEFAULT_SALT) -> np.ndarray:
    """64-bit keyed BLAKE2b of normalised ids (int64 bit patterns). Every bank must use the
    same salt; keep it secret from the compute parties as defence in depth (keys are never
    opened anyway). Collision bound: N distinct ids collide with probability <= N^2 / 2^65."""
    copy = hashlib.blake2b(digest_size=8, key=salt_key(salt), person=_PERSON).copy

    def digest(ident: str) -> bytes:
        h = copy()  # the keyed state, without re-absorbing the key block
        h.update(ident.encode("utf-8"))
        return h.digest()

    digests = b"".join(map(digest, ids))
    return np.frombuffer(digests, dtype="<i8").astype(np.int64) if ids else np.zeros(0, dtype=np.int64)


def check_total_bound(rows: int, bound: float, what: str, extra: float = 0.0) -> None:
    """RangeError unless ``rows`` values of magnitude ``bound`` (plus ``extra``) stay below
    2^62, so that group totals and differences with a threshold fit 64-bit shares."""
    if not rows * float(bound) + abs(float(extra)) < MAX_TOTAL:
        plus = f" (plus {abs(float(extra)):.4g} for the comparison)" if extra else ""
        raise RangeError(
            f"{what}: {rows} rows of up to {bound:.4g} could total {rows * float(bound):.4g}{plus}, beyond the "
            f"{MAX_TOTAL:.4g} that the join's 64-bit arithmetic holds; declare a tighter bound"
        )


# ----- input ------------------------------------------------------------------------------
def _announce_counts(ctx: Context, owners: Sequence[int], n_mine: int | None) -> list[int] | None:
    """Round 1: every owner tells the compute parties its row count. Returns the counts (in
    owner order) on compute parties, None elsewhere."""
    rank = ctx.rank
    sends = {}
    if rank in owners:
        msg = torch.tensor([int(n_mine)], dtype=torch.int64)
        sends = {p: msg for p in range(N_COMPUTE) if p != rank}
    recv = [o for o in owners if o != rank] if ctx.is_compute else []
    got = ctx.exchange("join-counts", sends=sends, recv_from=recv)
    if not ctx.is_compute:
        return None
    return [int(n_mine) if o == rank else int(got[o][0]) for o in owners]


def _owner_draws(ctx: Context, owner: int, size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """This party's random share components (first, second) of an owner's input of ``size``
    words: the ones it holds, drawn from the streams it shares with the owner or the other
    holder. None where the component comes in a message."""
    rank = ctx.rank
    if owner < N_COMPUTE:
        if rank == owner:  # s_o (with o-1) and s_{o+1} (with o+1)
            return ctx.prg_prev.int64(size), ctx.prg_next.int64(size)
        if rank == (owner + 1) % N_COMPUTE:  # holds (s_{o+1}, s_{o+2}): s_{o+1} shared with o
            return ctx.prg_prev.int64(size), None
        if rank == (owner + 2) % N_COMPUTE:  # holds (s_{o+2}, s_o): s_o shared with o
            return None, ctx.prg_next.int64(size)
        return None, None
    if rank == owner:
        return ctx.input_prgs[0].int64(size), ctx.input_prgs[1].int64(size)
    if not ctx.is_compute:
        return None, None
    keys = ctx.input_prgs_of[owner]
    if rank == 0:
        return keys[0].int64(size), keys[1].int64(size)
    if rank == 1:
        return keys[1].int64(size), None
    return None, keys[0].int64(size)


def share_rows(
    ctx: Context,
    owners: Sequence[int],
    words: np.ndarray | None,
    values: np.ndarray | None,
    n_words: int,
    n_values: int,
) -> tuple[BooleanShares | None, ArithmeticShares | None, list[int] | None]:
    """Every owner's rows, (n_o, n_words) int64 words XOR-shared and (n_o, n_values) int64
    values additively shared in Z_2^64, concatenated in owner order. ``words``/``values``
    are given on the owners (None elsewhere).
    Returns (words, values, counts) on the compute parties, (None, None, None) elsewhere.
    Cost: 2 rounds (row counts, then the shares); an owner sends 8 bytes to every compute
    party, then one message of (n_words + n_values) words per row to each of the two
    holders of the third share. Leakage: every owner's row count, to the compute parties.
    """
    rank = ctx.rank
    width = n_words + n_values
    mine = None
    if rank in owners:
        w = np.zeros((0, n_words), dtype=np.int64) if words is None else np.asarray(words, dtype=np.int64)
        v = np.zeros((len(w), n_values), dtype=np.int64) if values is None else np.asarray(values, dtype=np.int64)
        w = w.reshape(len(w), n_words)
        v = v.reshape(len(v), n_values)
        if len(w) != len(v):
            raise InputError(f"{ctx.name_of(rank)}: {len(w)} keys but {len(v)} value rows")
        mine = torch.from_numpy(np.ascontiguousarray(np.concatenate([w, v], axis=1)))
    counts = _announce_counts(ctx, owners, None if mine is None else mine.shape[0])
    if counts is None:  # an input party: draw, send, done
        if mine is None:
            return None, None, None
        size = mine.numel()
        r0, r1 = _owner_draws(ctx, rank, size)
        third = _third(mine, r0, r1, n_words)
        ctx.exchange("join-input", sends={1: third, 2: third})
        return None, None, None
    # compute party: draw every owner's components in owner order, then one exchange
    draws = {}
    sends = {}
    for o, n in zip(owners, counts, strict=True):
        draws[o] = _owner_draws(ctx, o, n * width)
        if o == rank:
            third = _third(mine, draws[o][0], draws[o][1], n_words)
            sends = {(rank + 1) % N_COMPUTE: third, (rank + 2) % N_COMPUTE: third}
    recv = [o for o in owners if o != rank and _receives_third(rank, o)]
    got = ctx.exchange("join-input", sends=sends, recv_from=recv)
    firsts, seconds = [], []
    for o, n in zip(owners, counts, strict=True):
        first, second = draws[o]
        if first is None:
            first = got[o] if o != rank else None
        if second is None:
            second = got[o] if o != rank else None
        firsts.append(first.reshape(n, width))
        seconds.append(second.reshape(n, width))
    first = torch.cat(firsts) if firsts else torch.zeros((0, width), dtype=torch.int64)
    second = torch.cat(seconds) if seconds else torch.zeros((0, width), dtype=torch.int64)
    keys = BooleanShares(first[:, :n_words].contiguous(), second[:, :n_words].contiguous())
    vals = ArithmeticShares(RING64, first[:, n_words:].contiguous(), second[:, n_words:].contiguous())
    return keys, vals, counts


def _receives_third(rank: int, owner: int) -> bool:
    """Whether compute party ``rank`` gets the third share of ``owner``'s input by message."""
    if owner < N_COMPUTE:
        return rank in ((owner + 1) % N_COMPUTE, (owner + 2) % N_COMPUTE)
    return rank in (1, 2)


def _third(mine: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, n_words: int) -> torch.Tensor:
    """x - r0 - r1 on the value columns, x ^ r0 ^ r1 on the word columns."""
    width = mine.shape[1]
    a = r0.reshape(-1, width)
    b = r1.reshape(-1, width)
    out = mine - a - b
    out[:, :n_words] = mine[:, :n_words] ^ a[:, :n_words] ^ b[:, :n_words]
    return out.reshape(-1).contiguous()


# ----- the join ----------------------------------------------------------------------------
def tie_breakers(counts: Sequence[int]) -> torch.Tensor:
    """The public tie-breaker word of every row, in tree order (``sort.tree_order``) so that
    rows sort by bank, then row index: (bank index << ROW_BITS) | row index."""
    parts = []
    for b, n in enumerate(counts):
        if n >= 1 << ROW_BITS:
            raise InputError(f"a bank has {n} rows; the join takes at most 2^{ROW_BITS}")
        parts.append((b << ROW_BITS) | torch.arange(n, dtype=torch.int64))
    words = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    return tree_order(words)


_BANK_FIELD = int(tree_order(torch.tensor([-(1 << ROW_BITS)], dtype=torch.int64))[0])
"""The tie-breaker bits that hold the bank index, in tree order."""


def bank_bits(n_banks: int) -> int:
    """Bits of the bank index inside a unique-mode key: ceil(log2(banks)), at least 1."""
    return max(1, (max(n_banks, 1) - 1).bit_length())


def bank_field_mask(n_banks: int) -> int:
    """The key bits (in tree order: the least significant ones for the comparison) that a
    unique-mode key gives to the bank index."""
    return int(tree_order(torch.tensor([(1 << bank_bits(n_banks)) - 1], dtype=torch.int64))[0])


def unique_keys(hashes: np.ndarray, n_banks: int, party: str = "bank") -> np.ndarray:
    """A bank's 64-bit id hashes with the bank-index bits cleared, for a unique-mode join;
    ``InputError`` if two of them coincide (two different ids of this bank colliding, or
    ids not deduplicated first), which would make keys repeat."""
    keys = np.asarray(hashes, dtype=np.int64) & ~np.int64(bank_field_mask(n_banks))
    if np.unique(keys).size != keys.size:
        raise InputError(
            f"{party}: two of its distinct ids share a {64 - bank_bits(n_banks)}-bit key (a hash collision, "
            "probability ~ n^2 / 2^64); rerun with another salt"
        )
    return keys


def _public_words(ctx: Context, words: torch.Tensor) -> BooleanShares:
    zero = torch.zeros_like(words)
    return BooleanShares(words if ctx.rank == 0 else zero, words if ctx.rank == 2 else zero.clone())


def _public_ring64(ctx: Context, values: torch.Tensor) -> ArithmeticShares:
    zero = torch.zeros_like(values)
    return ArithmeticShares(RING64, values if ctx.rank == 0 else zero, values if ctx.rank == 2 else zero.clone())


class PrivateJoin:
    """All banks' rows sorted by customer key on secret shares, with each row's group flags.
    Build it with ``private_join``; compute parties hold shares, banks that are not compute
    parties hold only their own row count.

    Attributes on compute parties: ``counts`` (rows per owner), ``values`` (the shared value
    columns, sorted, ring64), ``same_customer`` (secret 0/1: row i has the customer of row
    i-1), ``same_customer_bank`` (also the same bank; None in unique mode, where each bank
    has at most one row per customer), ``sorted`` (the ``SortedRows``, for ``to_owners``).
    """

    def __init__(self, ctx: Context, owners: Sequence[int], n_rows: int | None, unique: bool):
        self.ctx = ctx
        self.owners = list(owners)
        self.n_rows = n_rows  # this rank's own row count (owners), None elsewhere
        self.unique = unique
        self.counts: list[int] | None = None
        self.values: ArithmeticShares | None = None
        self.same_customer: ArithmeticShares | None = None
        self.same_customer_bank: ArithmeticShares | None = None
        self.sorted: SortedRows | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.counts)

    def totals(self, columns: ArithmeticShares, step: str = "join-totals") -> ArithmeticShares:
        """Every row's customer total of ``columns`` (sorted order, shape (N, k), ring64).
        Cost: ceil(log2 N) rounds; 2k + 1 ring64 elements per row and round per party."""
        return group_totals(self.ctx, columns, self.same_customer, step)

    def ones(self, columns: int = 1) -> ArithmeticShares:
        """A public column of ones in sorted order (local), e.g. to count a group's rows."""
        return _public_ring64(self.ctx, torch.ones((self.total_rows, columns), dtype=torch.int64))

    def ones_minus(self, x: ArithmeticShares) -> ArithmeticShares:
        """1 - x (local)."""
        one = RING64.from_int64(torch.ones((), dtype=torch.int64))
        return x.neg().add_public(self.ctx.rank, one)

    def plus_public(self, x: ArithmeticShares, value: int) -> ArithmeticShares:
        """x + a public integer (local)."""
        return x.add_public(self.ctx.rank, RING64.from_int64(torch.tensor(value, dtype=torch.int64)))

    def count_customers(self, flags: ArithmeticShares, step: str = "join-count") -> ArithmeticShares:
        """How many customers have flag 1, for secret 0/1 ``flags`` (N,) that are the same on
        all of a customer's rows: each customer counts at its first row. Returns a shared
        (1,) ring64 count. Cost: 1 round; 1 ring64 element per row per party."""
        starts = self.ones_minus(self.same_customer)
        return mul(self.ctx, starts, flags, step).sum().reshape((1,))

    def over_thresholds(self, totals: ArithmeticShares, threshold: int, min_count: int, count_bits: int,
                        step: str = "join") -> ArithmeticShares:
        """Secret 0/1 per row: [total > threshold or count >= min_count], for packed totals
        t = total << c | count (count < 2^c, c = ``count_bits``; e.g. ``totals`` of a value
        column packed with a row count). One conversion of t to bits, then both tests as
        unsigned comparisons with public words in one call, then their OR and the bit's
        injection into ring64.
        total > threshold  <=>  t > (threshold + 1) 2^c - 1 as signed values (the low c bits
        are < 2^c); count >= min  <=>  (t mod 2^c) > min - 1.
        Cost: 8 rounds (conversion, 8 words) + 7 (comparisons, ~6 words) + 1 (OR) + 2 (bit
        injection, 1 ring element) per row. Error: exact."""
        ctx = self.ctx
        n = totals.shape[0]
        sign = -(1 << 63)
        padded = max(64, -(-n // 64) * 64)  # so that the two results fill separate words
        bits = boolean.bit_decompose(ctx, totals)
        low = (1 << count_bits) - 1

        def lay(first_half: torch.Tensor, second_half: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(2 * padded, dtype=torch.int64)
            out[:n] = first_half
            out[padded : padded + n] = second_half
            return tree_order(out).reshape(-1, 1)

        secret = BooleanShares(lay(bits.first ^ (sign if ctx.rank == 0 else 0), bits.first & low),
                               lay(bits.second ^ (sign if ctx.rank == 2 else 0), bits.second & low))
        del bits
        limit = torch.full((n,), ((threshold + 1) << count_bits) - 1, dtype=torch.int64) ^ sign
        public = lay(limit, torch.full((n,), min_count - 1, dtype=torch.int64))
        del limit
        zero = torch.zeros((), dtype=torch.int64).expand(public.shape)  # read only: no memory per row
        bounds = BooleanShares(public if ctx.rank == 0 else zero, public if ctx.rank == 2 else zero)
        above = less_than_words(ctx, bounds, secret, f"{step}-thresholds")
        del bounds, secret, public
        words = above.shares.first.numel() // 2
        over, enough = above.shares.getitem(slice(0, words)), above.shares.getitem(slice(words, None))
        both = boolean.and_(ctx, over, enough, f"{step}-or")
        flag = PackedBits(over.xor(enough).xor(both), n)
        return boolean.bit_to_arithmetic(ctx, flag.unpack(), RING64)

    def to_owners(
        self,
        columns: ArithmeticShares | None,
        n_columns: int,
        recipients: Sequence[int] | None = None,
        shared_extra: ArithmeticShares | None = None,
        n_extra: int = 0,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Open ``columns`` (sorted order, (N, n_columns), ring64) to the banks: every
        recipient bank gets its own rows only, in its input order; ``shared_extra`` (n_extra
        values, given on the compute parties) goes to every recipient as well. Every rank
        calls this; it returns (own rows (n_own, n_columns) int64, extra (n_extra,) int64)
        on recipients and (None, None) elsewhere. A rank that is not a recipient receives
        nothing.
        Cost: 3 rounds (inverse shuffle) + 1 round; every compute party sends each input-
        party recipient its share of that bank's rows (8 bytes per row and column), and
        the predecessor of a compute-party recipient does the same.
        Leakage: each recipient learns its own rows' values and the extra values."""
        ctx = self.ctx
        rank = ctx.rank
        recipients = list(self.owners if recipients is None else recipients)
        for r in recipients:
            if r not in self.owners:
                raise ProtocolError(f"rank {r} is not a bank of this join")
        sends = {}
        back = None
        if ctx.is_compute:
            (back,) = self.sorted.restore([columns], "join-return")
            offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(int)
            for r in recipients:
                if r >= N_COMPUTE or r == (rank + 1) % N_COMPUTE:
                    k = self.owners.index(r)
                    parts = [back.first[offsets[k] : offsets[k + 1]].reshape(-1)]
                    if shared_extra is not None:
                        parts.append(shared_extra.first.reshape(-1))
                    sends[r] = torch.cat(parts)
        if rank in recipients:
            senders = [(rank - 1) % N_COMPUTE] if ctx.is_compute else list(range(N_COMPUTE))
        else:
            senders = []
        got = ctx.exchange("join-open", sends=sends, recv_from=senders)
        if rank not in recipients:
            return None, None
        n_own = self.n_rows
        if ctx.is_compute:
            k = self.owners.index(rank)
            rows = slice(int(offsets[k]), int(offsets[k + 1]))
            parts = [back.first[rows].reshape(-1) + back.second[rows].reshape(-1)]
            if shared_extra is not None:
                parts.append(shared_extra.first.reshape(-1) + shared_extra.second.reshape(-1))
            total = torch.cat(parts) + got[senders[0]]
        else:
            total = got[0] + got[1] + got[2]
        expect = n_own * n_columns + n_extra
        if total.numel() != expect:
            raise ProtocolError(f"join: expected {expect} result values, got {total.numel()}")
        own = total[: n_own * n_columns].reshape(n_own, n_columns).numpy().copy()
        extra = total[n_own * n_columns :].numpy().copy()
        return own, extra


def private_join(
    ctx: Context,
    owners: Sequence[int],
    keys: np.ndarray | None,
    values: np.ndarray | None = None,
    n_values: int = 0,
    *,
    unique: bool = False,
    value_bound: float | None = None,
    bound_extra: float = 0.0,
    what: str = "join",
) -> PrivateJoin:
    """Share every owner's rows (64-bit keys, e.g. ``hash_ids``, plus ``n_values`` int64
    value columns) and sort them by key on the compute parties, with the flags that say
    which sorted rows belong to the same customer. Every rank calls it; owners pass their
    keys (n,) and values (n, n_values).

    Two modes, both with distinct sort keys (so opened comparisons leak nothing):
    - ``unique=True``: every bank has at most one row per key (it merged its own rows per
      customer first, in the clear). The owner clears the ``bank_bits`` lowest-ranking key
      bits (``unique_keys``: refuses repeats) and the compute parties put the public bank
      index there: one 64-bit word per row, of which 64 - bank_bits are hash (collision
      bound N^2 / 2^(65 - bank_bits)). Comparisons cost 7 rounds and ~24 bytes.
    - ``unique=False``: rows may repeat a key; the compute parties append a second word,
      bank index << 40 | row index. Comparisons cost 8 rounds and ~48 bytes; the flags
      also tell rows of the same customer *and* bank apart (``same_customer_bank``).

    With ``value_bound`` (largest |value| of a row), the compute parties check once the row
    counts are known, before the sort, that a group's total (at most one row per bank in
    unique mode, all N rows otherwise) plus ``bound_extra`` stays below 2^62
    (``check_total_bound``), and raise ``RangeError`` otherwise.
    Cost: 2 rounds to share; the sort (``sort_rows``: 3 rounds of shuffle, then 7 or 8
    rounds per quicksort level: ~170 rounds and ~435 bytes per row for unique keys at
    N = 1e5, about twice the bytes with two words); 6 (unique) or 7 rounds and ~1 or ~2
    words per row for the adjacent equalities; 2 rounds for their conversion to arithmetic.
    Leakage: every bank's row count, to the compute parties.
    """
    rank = ctx.rank
    n_mine = None if rank not in owners else (0 if keys is None else len(keys))
    join = PrivateJoin(ctx, owners, n_mine, unique)
    words = None if keys is None else np.asarray(keys, dtype=np.int64).reshape(-1, 1)
    if unique and words is not None:
        words = unique_keys(words.reshape(-1), len(owners), ctx.name_of(rank)).reshape(-1, 1)
    hashed, vals, counts = share_rows(ctx, owners, words, values, 1, n_values)
    if not ctx.is_compute:
        return join
    join.counts = counts
    n = sum(counts)
    if value_bound is not None:  # a group holds at most one row per bank in unique mode
        check_total_bound(min(n, len(owners)) if unique else n, value_bound, what, bound_extra)
    if unique:
        bank_index = torch.cat([torch.full((c,), b, dtype=torch.int64) for b, c in enumerate(counts)])
        field = _public_words(ctx, tree_order(bank_index)) if n else _public_words(ctx, bank_index)
        key_words = BooleanShares(
            (hashed.first[:, 0] ^ field.first).reshape(n, 1), (hashed.second[:, 0] ^ field.second).reshape(n, 1)
        )
        compare_mask = ~bank_field_mask(len(owners))
        del bank_index, field
    else:
        tb = _public_words(ctx, tie_breakers(counts))
        key_words = BooleanShares(
            torch.stack([hashed.first[:, 0], tb.first], dim=1), torch.stack([hashed.second[:, 0], tb.second], dim=1)
        )
        del tb
    del hashed
    rows = [key_words, vals]
    del key_words, vals  # the sort drops the unsorted rows once they are shuffled
    join.sorted = sort_rows_from(ctx, rows)
    join.values = join.sorted.items[0]
    sk = join.sorted.keys
    adjacency = BooleanShares(sk.first.clone(), sk.second.clone())
    if unique:
        adjacency.first &= compare_mask
        adjacency.second &= compare_mask
        prefixes = 1
    else:
        adjacency.first[:, 1] &= _BANK_FIELD
        adjacency.second[:, 1] &= _BANK_FIELD
        prefixes = 2
    if n:
        same = adjacent_equal(ctx, adjacency, prefixes=prefixes, step="join-adjacent")
        flags = bits_to_arithmetic(ctx, same, RING64)
    else:
        empty = torch.zeros((0, prefixes), dtype=torch.int64)
        flags = ArithmeticShares(RING64, empty, empty.clone())
    join.same_customer = ArithmeticShares(RING64, flags.first[:, 0].contiguous(), flags.second[:, 0].contiguous())
    if not unique:
        join.same_customer_bank = ArithmeticShares(
            RING64, flags.first[:, 1].contiguous(), flags.second[:, 1].contiguous()
        )
    return join


def aggregate_by_id(ids: Sequence[str], values: np.ndarray | None = None,
                    dtype=np.int64) -> tuple[list[str], np.ndarray | None]:
    """A bank's rows merged per id, in the clear before sharing: (distinct ids in first-seen
    order, per-id column sums of ``values`` (``dtype``, int64 by default) or None). Used by
    unique-mode joins."""
    distinct, inverse = factorize_ids(ids)
    if values is None:
        return distinct, None
    return distinct, sums_by_code(inverse, len(distinct), values, dtype)


def factorize_ids(ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(distinct ids in first-seen order, every row's index into them): the grouping step of
    ``aggregate_by_id``, for callers that sum more than one column over the same ids."""
    inverse, uniques = pd.factorize(np.asarray(ids, dtype=object), sort=False)
    return uniques.tolist(), inverse


def sums_by_code(inverse: np.ndarray, groups: int, values: np.ndarray, dtype=np.int64) -> np.ndarray:
    """Per-group column sums (groups, k) of ``values`` (one row per entry of ``inverse``),
    exact in int64 (wrapping modulo 2^64, as ``np.add`` does)."""
    values = np.asarray(values, dtype=dtype)
    n = len(inverse)
    values = values.reshape(n, values.size // n if n else max(1, values.shape[-1]))
    sums = np.zeros((groups, values.shape[1]), dtype=dtype)
    np.add.at(sums, inverse, values)
    return sums


__all__ = [
    "DEFAULT_SALT",
    "MAX_TOTAL",
    "PrivateJoin",
    "aggregate_by_id",
    "bank_bits",
    "bank_field_mask",
    "check_total_bound",
    "factorize_ids",
    "hash_ids",
    "normalise_id",
    "normalise_ids",
    "private_join",
    "salt_key",
    "share_rows",
    "sums_by_code",
    "table_ids",
    "tie_breakers",
    "unique_keys",
]
