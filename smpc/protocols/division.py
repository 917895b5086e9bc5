"""Reciprocal, division, square root and inverse square root of secrets of any magnitude.

Why not CrypTen's way: a Newton iteration started from a guess tuned for [0.1, 10] diverges
or is wrong by percents for divisors outside that range. Here every operand is first
*normalised* by its secret bit length, as a floating-point unit would: the leading one of
|v| is found on the boolean decomposition and v is scaled by an exact power of two into
[1/2, 1]. The iteration then always starts from the same interval, and the scale comes back
as an exact power of two at the end. The same holds for every divisor that fits 62 bits.

Pipeline of ``divide`` (the others reuse its pieces)::

    rounds  1-8   A2B of [x, y] (ring64: with the carries that lift shares to ring128)
    rounds  9-14  prefix-OR from the top of |v| - [v < 0] (local ones' complement); the
                  one-hot of its leading one; the 6 bits a (of x), m (of y) of its position
                  (local: one 16-bit lookup per share, ``_onehot_position``); [y != 0] and
                  the sign bits (local)
    round  15     table B2A (``Table``: a three-party OT over a table, indexed by bit
                  fields of the exponent words) of pairs of exponent bits: the exact
                  factors 2^(63-a), 2^(63-m) as products of three table outputs each, a
                  table over two bits giving a product of two factors in one go; the sign of
                  y as the factor +-45 2^P of Goldschmidt's start; a boolean adder starts on
                  e' = a + (63 - m) (4 rounds, 1-byte words)
    rounds 16-17  x' = x 2^(63-a) and y' = y 2^(63-m), |x'|, |y'| in [2^63, 2^64]: exact
                  products, then one truncation to P = 38 fractional bits: x_n, y_n
    rounds 18-21  Goldschmidt: r0 = sign(y) 45/16 - 15/8 y_n (|1 - y_n r0| <= 1/16), then
                  N <- N (2 - D), D <- D (2 - D) three times: M = x_n / y_n (1 - eps),
                  0 <= eps <= 2^-32
    rounds 19-21  (alongside) table B2A of the bits of e' and of its two top bits:
                  F_i = [y != 0] 2^(e' mod 32) T_i[e' >> 5], exact
    round  22     q = sum_i M F_i, truncated by the item's right shift or exact (left)

Why the sub-ranges: the quotient's binary exponent a - m spans 2 x 63 values and no single
truncated product can hold a 38-bit mantissa shifted by all of them below 2^82. Splitting e'
by its two top bits leaves shifts by e' mod 32 < 32 within each range, so each truncated
product stays below 2^70, and left shifts need no truncation at all (``plan_scaling``
picks the mantissa precision P' that needs the fewest products; a range whose values are
below one unit is dropped).

Magnitudes and failure probability: every probabilistic truncation acts on a value below
2^82 in Z_2^128 (shown at each step), so each fails with probability <= 2^-45; division,
sqrt and log do 11 of them per element, exp 12, sigmoid 21: <= 2^-40 per element in every
case (<= 2^-41 for division). Everything else is exact. ring64 secrets are lifted into
Z_2^128 exactly (the A2B carries, see ``boolean.a2b_with_carries``), the protocol runs there
and the result is reduced mod 2^64 (exact: ``output_frac_bits`` makes it fit).

Zero and small divisors: a secret cannot be tested against a bound without revealing the
outcome, so nothing is refused at run time. A zero divisor yields 0 (the exponent factor
carries a [y != 0] flag); 1/0 = 0; sqrt and 1/sqrt of y <= 0 give 0. A divisor below the
caller's declared ``lower`` bound still gives the right quotient (the protocol is exact for
every non-zero y that fits 62 bits) but one beyond the result's public bound, which later
range checks trust: keep ``lower`` honest. The default lower bound is one unit in the last
place of the divisor (2^-f): always true, but a large public bound.

Output precision: results carry ``f_out`` fractional bits; ``output_frac_bits`` picks, by
default, the most that keep the result truncatable, within [f + 11, f + 32] and at most 52
(ring128 defaults: 31..52). Errors are stated in units of 2^-f_out ("ulp").

Costs: ``cost_per_element`` (rounds and bytes per element per party, counted from the
structure; the tests assert ``ctx.comm_stats()`` equals them).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smpc.errors import RangeError
from smpc.fixedpoint import SECURITY_BITS
from smpc.prg import PRG
from smpc.protocols import arithmetic, boolean
from smpc.protocols.fused import (
    add_random2_,
    add_truncate_negated_,
    aes_kernels,
    rss_product_random,
    rss_product_truncated,
    uniform,
    xor_random2_,
)
from smpc.ring import RING64, RING128, Ring, broadcast_shape, c_kernels
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares

P = 38
"""Fractional bits of internal mantissas: products of two stay below 2^(2P + 5) < 2^82."""

TRUNC_MAGNITUDE_BITS = 82
"""Every internal probabilistic truncation acts on a value below 2^82 (failure <= 2^-45)."""

# ----- rounds: batching several protocols into one message per peer ----------------------


@dataclass
class _Prepared:
    sends: dict[int, torch.Tensor]
    expect: dict[int, int]
    finish: Callable[[dict[int, torch.Tensor]], object]


class Mul:
    """sum_k x_k * y_k (+ ``add``, a sharing at the product's scale), reshared in one round,
    optionally divided by 2^trunc in the same round. Every PRG draw happens in ``prepare``
    (see ``execute``); the sharings' own ring is used, so a ring64 job can compute in ring128.

    The masks and the truncation are ``arithmetic.product_masks`` and
    ``arithmetic.reshare_truncated``'s (same streams, same messages), deferred into a round.
    Cost: 1 ring element per element per party (with truncation: party 0 sends to party 2,
    parties 1 and 2 to each other). Error: exact; with truncation floor or one more,
    wrong with probability <= 2^(l+1-k) for |value| < 2^l."""

    def __init__(self, terms, add: ArithmeticShares | None = None, trunc: int = 0):
        self.terms = list(terms)
        self.add = add
        self.trunc = int(trunc)
        first = self.terms[0][0] if self.terms else add
        self.ring: Ring = first.ring

    def prepare(self, ctx) -> _Prepared:
        r = self.ring
        rank = ctx.rank
        d = self.trunc
        masks = arithmetic.product_masks(ctx, bool(d))
        if d and rank == 0 and len(self.terms) == 1 and self.add is None:  # one pass (C)
            (x, y), = self.terms
            message, mask = rss_product_truncated(
                r, x.first, x.second, y.first, y.second, d, ctx.prg_next, ctx.prg_prev, ctx.prg_next
            )
            return _Prepared({2: message.reshape(-1)}, {}, lambda got: ArithmeticShares(r, message, mask))
        z = None
        for k, (x, y) in enumerate(self.terms):  # the masks go in with the last product
            last = k == len(self.terms) - 1 and self.add is None
            z = rss_product_random(r, z, x.first, x.second, y.first, y.second, *(masks if last else ()))
        if self.add is not None:
            z = self.add.first.clone() if z is None else r.add_(z, self.add.first)
            add_random2_(r, z, *masks)
        shape, words = r.shape(z), z.numel()
        if d == 0:
            prev, nxt = (rank - 1) % N_COMPUTE, (rank + 1) % N_COMPUTE

            def finish(got):
                return ArithmeticShares(r, z, got[nxt].view(z.shape))

            return _Prepared({prev: z.reshape(-1)}, {nxt: words}, finish)
        # (every transport copies a payload when it is sent: z is reused in place after)
        if rank == 0:
            mask = uniform(r, ctx.prg_next, shape)
            message = r.sub_(r.rshift_logical_(z, d), mask)
            return _Prepared({2: message.reshape(-1)}, {}, lambda got: ArithmeticShares(r, message, mask))
        if rank == 1:
            mask = uniform(r, ctx.prg_prev, shape)

            def finish1(got):
                return ArithmeticShares(r, mask, add_truncate_negated_(r, z, got[2].view(z.shape), d))

            return _Prepared({2: z.reshape(-1)}, {2: words}, finish1)

        def finish2(got):
            return ArithmeticShares(r, add_truncate_negated_(r, z, got[1].view(z.shape), d), got[0].view(z.shape))

        return _Prepared({1: z.reshape(-1)}, {1: words, 0: words}, finish2)


class And:
    """Bitwise AND of several pairs of boolean sharings in one round (1 word per element per
    pair per party); returns a list."""

    def __init__(self, *pairs: tuple[BooleanShares, BooleanShares]):
        self.pairs = pairs

    def prepare(self, ctx) -> _Prepared:
        kernels = aes_kernels()
        shapes = [broadcast_shape(x.first.shape, y.first.shape) for x, y in self.pairs]
        total = sum(math.prod(shape) for shape in shapes)
        tensors = [t for x, y in self.pairs for t in (x.first, x.second, y.first, y.second)]
        aligned = ctx.prg_next.bytes_drawn % 8 == 0 and ctx.prg_prev.bytes_drawn % 8 == 0
        if kernels is not None and aligned and total and all(
            t.is_contiguous() and t.dtype == torch.int64 and t.shape == shape
            for t, shape in zip(tensors, [s for s in shapes for _ in range(4)], strict=True)
        ):  # one pass per pair, the zero-sharing computed in place
            z = torch.empty(total, dtype=torch.int64)
            (key1, start1), (key2, start2) = ctx.prg_next.claim(total), ctx.prg_prev.claim(total)
            offset = 0
            for (x, y), shape in zip(self.pairs, shapes, strict=True):
                n = math.prod(shape)
                kernels.and_terms(
                    z[offset:].data_ptr(), x.first.data_ptr(), x.second.data_ptr(), y.first.data_ptr(),
                    y.second.data_ptr(), n, key1, start1 + offset, key2, start2 + offset,
                )
                offset += n
        else:
            flats = []
            for x, y in self.pairs:
                t = x.first & (y.first ^ y.second)
                t ^= x.second & y.first
                flats.append(t.reshape(-1))
            z = torch.cat(flats) if len(flats) > 1 else flats[0]  # a fresh tensor either way
            xor_random2_(z, ctx.prg_next, ctx.prg_prev)
        prev, nxt = (ctx.rank - 1) % N_COMPUTE, (ctx.rank + 1) % N_COMPUTE

        def finish(got):
            other = got[nxt]
            out, offset = [], 0
            for shape in shapes:
                n = math.prod(shape)
                out.append(BooleanShares(z[offset : offset + n].view(shape), other[offset : offset + n].view(shape)))
                offset += n
            return out

        return _Prepared({prev: z}, {nxt: z.numel()}, finish)


@dataclass(frozen=True)
class Field:
    """Bits ``shift`` .. ``shift + width - 1`` of a boolean-shared word, as one part of a
    table index (a plain ``BooleanShares`` part is its bit 0)."""

    word: BooleanShares
    shift: int = 0
    width: int = 1


def _fields(parts: list) -> list[Field]:
    """The parts as fields, adjacent bits of one word merged (one extraction instead of two)."""
    out: list[Field] = []
    for part in parts:
        f = part if isinstance(part, Field) else Field(part, 0, 1)
        last = out[-1] if out else None
        if last is not None and last.word is f.word and last.shift + last.width == f.shift:
            out[-1] = Field(f.word, last.shift, last.width + f.width)
        else:
            out.append(f)
    return out


def _index_of(fields: list[Field], pick) -> torch.Tensor:
    """The table index b_0 + 2 b_1 + ... of the fields, on the share tensors ``pick`` selects
    (XOR-linear: index(first) ^ index(second) is the index of first ^ second)."""
    out, pos = None, 0
    for f in fields:
        w = pick(f.word)
        term = (w >> f.shift) if f.shift else w
        term = term & ((1 << f.width) - 1)
        if pos:
            term <<= pos
        out = term if out is None else out.bitwise_or_(term)
        pos += f.width
    return out.reshape(-1)


class Table:
    """Table B2A: arithmetic sharings of T[index] for each table, the index made of ``parts``
    (bit sharings, bit 0 each, or ``Field``s of words: b_0 + 2 b_1 + ..., in order);
    returns a list. With T = [0, 1] this is bit injection; with T = [1, 2^j] it injects a
    power-of-two factor; a table over two bits delivers a product of two factors without a
    multiplication.

    Protocol (a three-party OT over 2^k choices, after ABY3's bit injection): the sender S
    knows c = b_S ^ b_(S+1) of the index bits, the other two (A, B) know b_(S+2). Shares r0
    (S, B) and r1 (S, A) come from the pairwise PRGs, and so do fresh AES keys k_A (S, A) and
    k_B (S, B). S sends both receivers the table of T[c ^ j] - r0 - r1 over all j, entry j
    XORed with the blocks E_A(j) and E_B(j) of the two AES-CTR keystreams; A hands B its
    block at their common choice j = b_(S+2), B hands A its block there, and each removes
    both from entry j. Entry j of element i of table t is block (t n + i) 2^k + j (one
    ring128 element), so a receiver computes only the block it hands over.
    Cost: 1 round; the sender sends 2 * 2^k ring elements per element and table (2^k to
    each receiver), each receiver 1. Error: exact. Leakage: none (every other entry stays
    masked by a block of the stream the receiver lacks; the one it learns, T[index] - r0 -
    r1, is masked by the share it lacks)."""

    def __init__(self, parts: list, tables: list[list[int]], ring: Ring, sender: int = 0):
        self.fields = _fields(parts)
        self.tables, self.ring, self.sender = tables, ring, sender % N_COMPUTE

    def prepare(self, ctx) -> _Prepared:
        ring, sender, rank = self.ring, self.sender, ctx.rank
        a_rank, b_rank = (sender + 1) % N_COMPUTE, (sender + 2) % N_COMPUTE
        size = 1 << sum(f.width for f in self.fields)
        n_out, lanes = len(self.tables), ring.lanes
        n = self.fields[0].word.first.numel()
        words = n_out * n * size * lanes  # entries (t, i, j), each a ring element (lanes words)
        ring_shape = (lanes, n) if lanes > 1 else (n,)
        kernels = aes_kernels() if lanes == 2 else None

        def draw(prg) -> torch.Tensor:  # n_out ring tensors of n elements, one after the other
            return uniform(RING64, prg, (n_out * lanes * n,)).view(n_out, lanes, n)

        def shares(t: int, first: torch.Tensor, second: torch.Tensor) -> ArithmeticShares:
            return ArithmeticShares(ring, first[t].view(ring_shape), second[t].view(ring_shape))

        if rank == sender:  # c = b_S ^ b_(S+1): both its components
            c = (_index_of(self.fields, lambda w: w.first) ^ _index_of(self.fields, lambda w: w.second)).contiguous()
            r0 = draw(ctx.prg_prev)  # shared with B
            key_b = bytes(ctx.prg_prev.bytes(16))
            r1 = draw(ctx.prg_next)  # shared with A
            key_a = bytes(ctx.prg_next.bytes(16))
            if kernels is not None:
                message = torch.empty(words, dtype=torch.int64)
                values = _table_words(ring, self.tables)
                kernels.table_send128(
                    message.data_ptr(), c.data_ptr(), values.data_ptr(), r0.data_ptr(), r1.data_ptr(),
                    n_out, n, size, key_a, key_b,
                )
            else:
                plain = _table_plain(ring, self.tables, c, r0, r1, size)
                message = _aes_ctr(key_b, _aes_ctr(key_a, plain)).view(-1)
            return _Prepared(
                {a_rank: message, b_rank: message}, {}, lambda got: [shares(t, r0, r1) for t in range(n_out)]
            )
        is_a = rank == a_rank
        d = _index_of(self.fields, (lambda w: w.second) if is_a else (lambda w: w.first)).contiguous()
        prg = ctx.prg_prev if is_a else ctx.prg_next  # shared with the sender
        mine = draw(prg)
        key = bytes(prg.bytes(16))
        other = b_rank if is_a else a_rank
        if kernels is not None:
            block = torch.empty(n_out * lanes * n, dtype=torch.int64)
            kernels.table_keys128(block.data_ptr(), d.data_ptr(), n_out, n, size, key)
        else:
            block = _pick(PRG(key).int64(words).view(n_out, n, size, lanes), d).reshape(-1)

        def finish(got):
            if kernels is not None:
                chosen = torch.empty((n_out, lanes, n), dtype=torch.int64)
                kernels.table_pick128(
                    chosen.data_ptr(), got[sender].data_ptr(), block.data_ptr(), got[other].data_ptr(),
                    d.data_ptr(), n_out, n, size,
                )
            else:
                chosen = _pick(got[sender].view(n_out, n, size, lanes), d)
                chosen ^= block.view(n_out, lanes, n)
                chosen ^= got[other].view(n_out, lanes, n)
            return [shares(t, mine, chosen) if is_a else shares(t, chosen, mine) for t in range(n_out)]

        # (every transport copies a payload when it is sent: block is read again in finish)
        return _Prepared({other: block}, {sender: n_out * n * size * lanes, other: n_out * lanes * n}, finish)


def _pick(entries: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Entry d_i of each element of (n_out, n, size, lanes) words, as (n_out, lanes, n)."""
    n_out, n, _, lanes = entries.shape
    at = d.view(1, n, 1, 1).expand(n_out, n, 1, lanes)
    return torch.gather(entries, 2, at)[:, :, 0].permute(0, 2, 1).contiguous()


def _table_plain(ring: Ring, tables: list[list[int]], c: torch.Tensor, r0, r1, size: int) -> torch.Tensor:
    """The sender's plaintext T_t[c_i ^ j] - r0_t[i] - r1_t[i] as (n_out, n, size, lanes) words
    (the torch path of ``table_send128``)."""
    n_out, lanes, n = r0.shape
    ring_shape = ring.zeros((n,)).shape
    plain = torch.empty((n_out, n, size, lanes), dtype=torch.int64)
    for t, table in enumerate(tables):
        values = _table_lanes(ring, table)
        base = ring.add(r0[t].view(ring_shape), r1[t].view(ring_shape))
        for j in range(size):
            at = c ^ j
            entry = torch.stack([values[lane].index_select(0, at) for lane in range(lanes)]).view(ring_shape)
            plain[t, :, j, :] = ring.sub(entry, base).reshape(lanes, n).T
    return plain


_TABLE_WORDS: dict[tuple[int, tuple[tuple[int, ...], ...]], torch.Tensor] = {}


def _table_words(ring: Ring, tables: list[list[int]]) -> torch.Tensor:
    """Public tables as (n_out, size, lanes) words: entry e of table t at [t, e] (cached:
    read only)."""
    key = (ring.bits, tuple(tuple(t) for t in tables))
    got = _TABLE_WORDS.get(key)
    if got is None:
        lanes = [_table_lanes(ring, t) for t in tables]
        got = torch.stack([torch.stack(per, dim=1) for per in lanes]).contiguous()
        _TABLE_WORDS[key] = got
    return got


def _aes_ctr(key: bytes, plain: torch.Tensor) -> torch.Tensor:
    """AES-128-CTR (counter from 0) of a contiguous int64 tensor: ``PRG(key)``'s keystream
    XOR the plaintext, in one pass."""
    words = plain.numel()
    out = torch.empty(words + 2, dtype=torch.int64)  # update_into wants 15 spare bytes
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    encryptor.update_into(memoryview(plain.numpy()).cast("B"), memoryview(out.numpy()).cast("B"))
    return out[:words].view(plain.shape)


_TABLE_CACHE: dict[tuple[int, tuple[int, ...]], list[torch.Tensor]] = {}


def _table_lanes(ring: Ring, table: list[int]) -> list[torch.Tensor]:
    """A public table as one contiguous int64 tensor per lane (cached: read only)."""
    key = (ring.bits, tuple(table))
    got = _TABLE_CACHE.get(key)
    if got is None:
        values = ring.from_ints([v % (1 << ring.bits) for v in table]).reshape(ring.lanes, len(table))
        got = [values[lane].contiguous() for lane in range(ring.lanes)]
        _TABLE_CACHE[key] = got
    return got


Protocol = Generator[list, list, object]


def execute(ctx, ops: list, step: str) -> list:
    """Run the ops of one round: prepare all (every PRG draw happens here, in op order on
    every party, so pairwise streams stay aligned), one exchange, then finish all."""
    if not ops:
        return []
    prepared = [op.prepare(ctx) for op in ops]
    parts: dict[int, list[torch.Tensor]] = {}
    expect: dict[int, int] = {}
    for p in prepared:
        for peer, payload in p.sends.items():
            parts.setdefault(peer, []).append(payload)
        for peer, words in p.expect.items():
            expect[peer] = expect.get(peer, 0) + words
    sends = {peer: (ts if len(ts) > 1 else ts[0]) for peer, ts in parts.items()}  # parts: no concatenation
    got = ctx.exchange(step, sends=sends, recv_from=sorted(expect))
    offsets = dict.fromkeys(expect, 0)
    results = []
    for p in prepared:
        mine = {}
        for peer, words in p.expect.items():
            mine[peer] = got[peer][offsets[peer] : offsets[peer] + words]
            offsets[peer] += words
        results.append(p.finish(mine))
    return results


def drive(ctx, protocol: Protocol, step: str):
    """Run a protocol generator to completion: each ``yield [ops]`` is one round."""
    results = None
    rounds = 0
    while True:
        try:
            ops = protocol.send(results)
        except StopIteration as stop:
            return stop.value
        results = execute(ctx, ops, f"{step}{rounds}")
        rounds += 1


def parallel(*protocols: Protocol) -> Protocol:
    """Run protocol generators side by side: their ops of the same round share one message
    per peer. Returns the list of their results."""
    results: list = [None] * len(protocols)
    inbox: dict[int, list | None] = dict.fromkeys(range(len(protocols)))
    active = dict(enumerate(protocols))
    while True:
        ops, spans = [], []
        for i, gen in list(active.items()):
            try:
                mine = gen.send(inbox[i])
            except StopIteration as stop:
                results[i] = stop.value
                del active[i]
                continue
            spans.append((i, len(ops), len(mine)))
            ops.extend(mine)
        if not active:
            return results
        got = yield ops
        for i, start, count in spans:
            inbox[i] = got[start : start + count]


# ----- small local helpers --------------------------------------------------------------

R128 = RING128


_CONSTS: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()
_CONSTS_LOCK = threading.Lock()
_CONSTS_BYTES = 96 << 20  # the most memory kept for public constants (the newest always kept)


def _const(ring: Ring, value: int, n: int) -> torch.Tensor:
    """A public constant (mod 2^k) as a full, contiguous ring tensor of n elements (what the
    C kernels take). The most recent ones are kept and shared between calls and party
    threads (a Goldschmidt step or a polynomial reuses its constants): READ ONLY, never an
    in-place operand."""
    key = (ring.bits, value % (1 << ring.bits), n)
    with _CONSTS_LOCK:
        got = _CONSTS.get(key)
        if got is not None:
            _CONSTS.move_to_end(key)
            return got
    t = ring.from_ints([key[1]])
    got = t.reshape(ring.lanes, 1).expand(ring.lanes, n).reshape(ring.zeros((n,)).shape).contiguous()
    with _CONSTS_LOCK:
        _CONSTS[key] = got
        total = sum(c.numel() * 8 for c in _CONSTS.values())
        while total > _CONSTS_BYTES and len(_CONSTS) > 1:
            _, old = _CONSTS.popitem(last=False)
            total -= old.numel() * 8
    return got


def _affine(ctx, x: ArithmeticShares, a: int, b: int) -> ArithmeticShares:
    """a * x + b for public integers (local)."""
    ring, n = x.ring, x.numel()
    out = x.mul_public(_const(ring, a, n)) if a != 1 else x
    return out.add_public(ctx.rank, _const(ring, b, n)) if b else out


def _public_minus(ctx, c: torch.Tensor, x: ArithmeticShares) -> ArithmeticShares:
    """c - x for a public ring tensor c (local; one pass per share)."""
    r = x.ring
    first = r.sub(c, x.first) if ctx.rank == 0 else r.neg(x.first)
    second = r.sub(c, x.second) if ctx.rank == 2 else r.neg(x.second)
    return ArithmeticShares(r, first, second)


def _contiguous(x: ArithmeticShares) -> ArithmeticShares:
    return ArithmeticShares(x.ring, x.first.contiguous(), x.second.contiguous())


def _sum(items: list[ArithmeticShares]) -> ArithmeticShares:
    out = items[0]
    for x in items[1:]:
        out = out.add(x)
    return out


def _table(k: int, fn) -> list[int]:
    """The table of fn over k bits (index b_0 + 2 b_1 + ...), reduced mod 2^128."""
    return [int(fn(*((i >> b) & 1 for b in range(k)))) % (1 << 128) for i in range(1 << k)]


def _bit(w: BooleanShares, i: int) -> BooleanShares:
    return (w.rshift(i) if i else w).and_public(1)


def embed_unsigned(x: ArithmeticShares) -> ArithmeticShares:
    """The three ring64 shares, read unsigned, as a ring128 sharing of their integer sum."""
    z = torch.zeros_like(x.first)
    return ArithmeticShares(R128, torch.stack([x.first, z]), torch.stack([x.second, z.clone()]))


def to_ctx_ring(ctx, x: ArithmeticShares) -> ArithmeticShares:
    """A ring128 result back in the context's ring (ring64: the low lane, exact while the
    value fits 64 bits)."""
    if ctx.ring.bits == 128:
        return x
    return ArithmeticShares(ctx.ring, x.first[0].contiguous(), x.second[0].contiguous())


def fits_normalisation(bound: float, frac_bits: int) -> bool:
    """Whether values up to ``bound`` at ``frac_bits`` fit the 62 bits normalisation handles."""
    return bound * 2.0**frac_bits < 2.0**62


# ----- normalisation: bit length of secrets ---------------------------------------------


def _xor_of_positions(byte: int) -> int:
    out = 0
    for k in range(8):
        if (byte >> k) & 1:
            out ^= k
    return out


# position index of a one-hot word, by 16-bit lookup: low byte = the XOR of the word's 8
# bytes, high byte = their 8 parities (see _onehot_position)
_POSITION_LUT = torch.tensor(
    [_xor_of_positions(i & 255) | (_xor_of_positions(i >> 8) << 3) for i in range(1 << 16)], dtype=torch.int64
)


def _onehot_position(word: torch.Tensor) -> torch.Tensor:
    """L(w) = the XOR of the positions of the set bits of w (the position of a one-hot word),
    per share (L is XOR-linear). Position 8b + k contributes k to the low three bits and b to
    the high three, and b only through the parity of byte b: L(w) = L8(XOR of the bytes) +
    8 L8(byte parities), one lookup on 16 bits instead of one per byte."""
    f = word ^ (word >> 32)
    f ^= f >> 16
    f ^= f >> 8
    p = word ^ (word >> 4)
    p ^= p >> 2
    p ^= p >> 1
    p &= 0x0101010101010101  # bit 8b: parity of byte b
    p *= 0x0102040810204080  # gathers them into bits 56..63 (parity of byte b at 56 + b)
    idx = (p >> 48) & 0xFF00
    idx |= f & 255
    return _POSITION_LUT.index_select(0, idx.reshape(-1)).view(word.shape)


def _leading_position(word: torch.Tensor) -> torch.Tensor:
    """``_onehot_position(word ^ (word >> 1))``: one C pass (popcounts) where built."""
    kernels = c_kernels()
    if kernels is None or not word.is_contiguous() or word.numel() == 0:
        return _onehot_position(word ^ (word >> 1))
    out = torch.empty_like(word)
    kernels.xor_positions(out.data_ptr(), word.data_ptr(), word.numel(), 1)
    return out


@dataclass
class Normalised:
    """Boolean facts about v (a secret fitting 62 bits), each in bit 0 of a word: ``sign``
    [v < 0]; ``nonzero`` [|v| - [v < 0] != 0]; ``exp_word`` the 6 bits of m (bits 0..5),
    the position of the leading one of |v| - [v < 0] (0 if none), so that |v| lies in
    [2^m, 2^(m+1)] for v != 0; ``lift`` (c1, c2, sign) for ``boolean.lift_table`` (ring64
    only)."""

    sign: BooleanShares
    nonzero: BooleanShares
    exp_word: BooleanShares
    lift: list[BooleanShares] | None

    @property
    def exp_bits(self) -> list[Field]:
        """The bits m_0..m_5 as table index parts (no extraction until a table reads them)."""
        return [Field(self.exp_word, i) for i in range(6)]


def normalise(ctx, values: list[ArithmeticShares]) -> list[Normalised]:
    """Bit lengths of several flat secrets at once (their words travel together).
    Cost: 14 rounds (8 for A2B, 6 for the prefix-OR); 14 words (112 bytes) per element per
    party. Error: exact."""
    sizes = [v.numel() for v in values]
    if values[0].ring.bits == 64:
        stacked = ArithmeticShares.cat(values, 0) if len(values) > 1 else values[0]
        bits, c1, c2 = boolean.a2b_with_carries(ctx, stacked)
    else:  # no lifting needed: the plain decomposition of the low words (their ring64 sharing)
        low = [ArithmeticShares(RING64, v.first[0], v.second[0]) for v in values]
        stacked = ArithmeticShares.cat(low, 0) if len(low) > 1 else _contiguous(low[0])
        bits, c1, c2 = boolean.bit_decompose(ctx, stacked), None, None
    sign = bits.rshift(63)
    prefix = boolean.prefix_or(ctx, bits, of_abs=True)
    # one-hot of the leading one: prefix ^ (prefix >> 1) (bit 63 of prefix is 0, so the
    # shares' arithmetic shifts share the logical one); its position, per share (local)
    index = BooleanShares(*(_leading_position(w) for w in (prefix.first, prefix.second)))
    nonzero = prefix.and_public(1)
    out, offset = [], 0
    for n in sizes:
        sl = slice(offset, offset + n)
        out.append(
            Normalised(
                sign=sign.getitem(sl),
                nonzero=nonzero.getitem(sl),
                exp_word=index.getitem(sl),
                lift=None if c1 is None else [c1.getitem(sl), c2.getitem(sl), sign.getitem(sl)],
            )
        )
        offset += n
    return out


def _lifted(x: ArithmeticShares, correction: list | None) -> ArithmeticShares:
    """x in ring128: itself, or a ring64 sharing plus its lift correction."""
    return x if correction is None else embed_unsigned(x).add(correction[0])


def _lift_op(info: Normalised, sender: int) -> list:
    return [] if info.lift is None else [Table(info.lift, [boolean.lift_table()], R128, sender)]


def _factor(bit: int, position: int, invert: bool, step: int = 1) -> int:
    """2^(step * 2^position) if the bit (or its complement) is set, else 1."""
    on = (1 - bit) if invert else bit
    return 1 << (on * step * (1 << position))


def _pair_table(i: int, invert: bool, step: int = 1) -> list[int]:
    """Over bits i, i+1 of an exponent: the factor 2^(step (b_i 2^i + b_{i+1} 2^(i+1))), with
    1 - b for ``invert`` (then the product over all pairs is 2^(step (63 - e)))."""
    return _table(2, lambda b0, b1: _factor(b0, i, invert, step) * _factor(b1, i + 1, invert, step))


def _nonzero_gen(info: Normalised) -> Protocol:
    """[v != 0] = P0 | s = P0 ^ s ^ (P0 & s) (P0 alone misses v = -1 ulp). 1 round."""
    ((both,),) = yield [And((info.nonzero, info.sign))]
    return info.nonzero.xor(info.sign).xor(both)


# ----- the exponent: a boolean adder and power-of-two factors ------------------------------


def _add6_gen(a: BooleanShares, b: BooleanShares) -> Protocol:
    """a + b for 6-bit boolean values (bits 0..5 of the words): the 7-bit sum. Kogge-Stone
    over 8 bits. Cost: 4 rounds; 6 words per element per party in all. Error: exact."""
    p0 = a.xor(b)
    ((g,),) = yield [And((a, b))]
    p = p0
    for shift in (1, 2, 4):
        if shift == 4:
            ((pg,),) = yield [And((p, g.lshift(shift)))]
        else:
            ((pg, p),) = yield [And((p, g.lshift(shift)), (p, p.lshift(shift)))]
        g = g.xor(pg)
    return p0.xor(g.lshift(1)).and_public(127)


Items = list[tuple[list[int], int]]


def scale_items(offsets: list[int], negligible: int) -> Items:
    """The final scaling by 2^(offsets[r]) on sub-range r, as products M * F_i: one exact
    product for every range with a left shift (table 2^o_r there, 0 elsewhere) and one
    truncated product per range with a right shift (indicator table, truncation -o_r). A
    range shifted right by ``negligible`` bits or more holds values below one unit: dropped."""
    items = []
    if any(o >= 0 for o in offsets):
        items.append(([(1 << o) if o >= 0 else 0 for o in offsets], 0))
    for r, o in enumerate(offsets):
        if 0 < -o < negligible:
            items.append(([1 if q == r else 0 for q in range(len(offsets))], -o))
    return items


P_MIN = 32
"""Fewest fractional bits of a mantissa entering the final scaling: its rounding (relative
2^-31 for M >= 1/2) plus Goldschmidt's 2^-32 and the earlier truncations (~2^-35) stay
below 2^-30."""


def plan_scaling(base: int, ranges: int) -> tuple[int, Items]:
    """q = M 2^(e' - 63 + base - P') with e' = 32 r + low (0 <= low < 32, r < ranges) and M a
    mantissa in [1/2, 2] at P' fractional bits: the P' in [P_MIN, P] giving the fewest
    products (then the largest P'), and the items. M 2^low < 2^(P' + 32) <= 2^70."""
    best = None
    for p_final in range(P, P_MIN - 1, -1):
        offsets = [32 * r - 63 + base - p_final for r in range(ranges)]
        items = scale_items(offsets, p_final + 32)
        if best is None or len(items) < len(best[1]):
            best = (p_final, items)
    return best


def _low_tables(low: list[BooleanShares], invert: bool) -> list[tuple[list[BooleanShares], list[int]]]:
    """(bits, table) for 2^(low5) (or 2^(31 - low5)): pairs (b0,b1), (b2,b3); b4 alone."""
    return [
        (low[0:2], _table(2, lambda b0, b1: _factor(b0, 0, invert) * _factor(b1, 1, invert))),
        (low[2:4], _table(2, lambda b2, b3: _factor(b2, 2, invert) * _factor(b3, 3, invert))),
    ]


def _scale_gen(
    low: list[BooleanShares], top: list[BooleanShares], items: Items, flag: BooleanShares | None, invert: bool = False
) -> Protocol:
    """F_i = [flag] 2^(low5) T_i[top] for each item (``invert``: 2^(31 - low5)).
    Round 1: table B2A of (b0,b1), (b2,b3), (b4, flag) and of the top bits (one table per
    item); rounds 2-3: a product tree. Senders: party 0 sends (b0,b1), party 1 (b2,b3) and
    (b4, flag), party 2 the top table: party 0 does the most work in the truncated products
    of the same round (``Mul``). Cost: 3 rounds. Error: exact."""
    ops = [Table(b, [t], R128, i) for i, (b, t) in enumerate(_low_tables(low, invert))]
    if flag is not None:
        ops.append(Table([low[4], flag], [_table(2, lambda b4, f: f * _factor(b4, 4, invert))], R128, 1))
    else:
        ops.append(Table([low[4]], [_table(1, lambda b4: _factor(b4, 4, invert))], R128, 1))
    ops.append(Table(top, [t for t, _ in items], R128, 2))
    (g01,), (g23,), (g4,), tops = yield ops
    got = yield [Mul([(g01, g23)]), *[Mul([(g4, t)]) for t in tops]]
    return (yield [Mul([(got[0], r)]) for r in got[1:]])


def _apply(mantissa: ArithmeticShares, factors: list[ArithmeticShares], items: Items) -> list:
    """The final round: M * F_i, truncated where the item shifts right."""
    return [Mul([(mantissa, f)], trunc=d) for f, (_, d) in zip(factors, items, strict=True)]


# ----- Goldschmidt ----------------------------------------------------------------------

# r0 = 45/16 - 15/8 y on [1/2, 1]: |1 - y r0| <= 1/16 (the equi-ripple linear start, rounded)
_ALPHA, _BETA, _START_BITS = 45, 30, 4


def _sign_alpha_table() -> list[int]:
    """Over the divisor's sign bit s: (1 - 2s) * 45 * 2^P, so that r0 carries the sign."""
    return _table(1, lambda s: (1 - 2 * s) * (_ALPHA << P))


def _goldschmidt_gen(
    ctx,
    y_n: ArithmeticShares,
    x_n: ArithmeticShares | None,
    alpha: ArithmeticShares | None,
    p_final: int,
    iterations: int = 3,
    in_bits: int = P,
) -> Protocol:
    """x_n / y_n for |y_n| in [1/2, 1] at ``in_bits`` fractional bits (x_n too), the result
    at ``p_final`` fractional bits.

    r0 = sign(y) 45/16 - 15/8 y_n (``alpha`` is the sharing of sign(y) 45 2^in_bits, None for
    a positive divisor), D0 = y_n r0 in [15/16, 17/16], N0 = x_n r0; then N <- N (2 - D),
    D <- D (2 - D): 1 - D_k = (1 - D0)^(2^k), so after 3 steps the relative error is
    (1/16)^8 = 2^-32, plus about 2^-P per truncation. With x_n None the numerator is 1/2
    (N0 = r0 / 2, kept at in_bits + 5 bits).
    Magnitudes: y_n w < 2^in_bits 1.88 2^(in_bits+4) <= 2^81 (in_bits <= 38); N (2 - D) < 2^78.
    Cost: 1 + iterations rounds."""
    n = y_n.numel()
    if alpha is None:
        w = _affine(ctx, y_n, -_BETA, _ALPHA << in_bits)
    else:
        w = alpha.sub(_affine(ctx, y_n, _BETA, 0))  # r0 at in_bits + 4 fractional bits
    start = 2 * in_bits + _START_BITS - P  # D0, N0 at P bits
    ops = [Mul([(y_n, w)], trunc=start)]
    if x_n is not None:
        ops.append(Mul([(x_n, w)], trunc=start))
    got = yield ops
    d = got[0]
    num, extra = (got[1], 0) if x_n is not None else (w, in_bits + _START_BITS + 1 - P)
    two = _const(R128, 2 << P, n)
    for k in range(iterations):
        factor = _public_minus(ctx, two, d)  # 2 - D
        last = k == iterations - 1
        ops = [Mul([(num, factor)], trunc=P + extra + (P - p_final if last else 0))]
        if not last:
            ops.append(Mul([(d, factor)], trunc=P))
        got = yield ops
        num, extra = got[0], 0
        if not last:
            d = got[1]
    return num


def _flat(x: ArithmeticShares) -> ArithmeticShares:
    return _contiguous(x.reshape((x.numel(),)))


# ----- division and reciprocal ----------------------------------------------------------


def divide(ctx, x: ArithmeticShares, f_x: int, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """x / y for secrets x (f_x fractional bits) and y (f_y), result at f_out bits.

    Both must fit 62 bits as encoded integers (``fits_normalisation``; callers check the
    bounds). Algorithm, zero-divisor rule and magnitudes: module docstring.
    Cost: 22 rounds; ``cost_per_element("divide", ...)`` bytes per element (ring128 at the
    default 31 fractional bits: 1128 / 1240 / 1288 bytes from parties 0 / 1 / 2).
    Error: |q' - q| <= 2^-30 |q| + 1 ulp for every y != 0 (q = x / y of the encoded values,
    ulp = 2^-f_out; measured 4.1e-10 |q| over 1e5 bank-scale pairs); x / 0 = 0.
    Wrong with probability <= 2^-41 per element (11 truncations, each below 2^82).
    """
    shape = x.shape
    x, y = _flat(x), _flat(y)
    nx, ny = normalise(ctx, [x, y])
    # q = M 2^(a - m + f_out + f_y - f_x - P'), a - m = e' - 63 with e' = a + (63 - m) < 127
    p_final, items = plan_scaling(f_out + f_y - f_x, ranges=4)

    def mantissa() -> Protocol:
        # x' = x 2^(63-a), y' = y 2^(63-m): |x'|, |y'| in [2^63, 2^64], from three factor
        # pairs each (table over two exponent bits: 2^((1-b_i) 2^i + (1-b_j) 2^j))
        ops = [
            Table(info.exp_bits[i : i + 2], [_pair_table(i, invert=True)], R128, k)
            for k, (info, i) in enumerate((info, i) for info in (nx, ny) for i in (0, 2, 4))
        ]
        ops += [Table([ny.sign], [_sign_alpha_table()], R128, 2), *_lift_op(nx, 1), *_lift_op(ny, 2)]
        got = yield ops
        fx, fy, (alpha,) = [g[0] for g in got[0:3]], [g[0] for g in got[3:6]], got[6]
        lifts = got[7:]
        xi = _lifted(x, lifts[0] if lifts else None)
        yi = _lifted(y, lifts[1] if lifts else None)
        # |x f01| <= 2^62 2^3, f23 f45 <= 2^60: exact
        got = yield [Mul([(xi, fx[0])]), Mul([(fx[1], fx[2])]), Mul([(yi, fy[0])]), Mul([(fy[1], fy[2])])]
        # x' < 2^64 (< 2^82): truncate to P fractional bits of [1/2, 1]
        x_n, y_n = yield [Mul([(got[0], got[1])], trunc=64 - P), Mul([(got[2], got[3])], trunc=64 - P)]
        return (yield from _goldschmidt_gen(ctx, y_n, x_n, alpha, p_final))

    def exponent() -> Protocol:
        mbar = ny.exp_word.xor_public(ctx.rank, 63)  # 63 - m
        e_word, nonzero = yield from parallel(_add6_gen(nx.exp_word, mbar), _nonzero_gen(ny))
        bits = [Field(e_word, i) for i in range(7)]
        return (yield from _scale_gen(bits[:5], bits[5:7], items, nonzero))

    def protocol() -> Protocol:
        m, factors = yield from parallel(mantissa(), exponent())
        return _sum((yield _apply(m, factors, items)))

    q = drive(ctx, protocol(), "div")
    return to_ctx_ring(ctx, q).reshape(shape)


def reciprocal(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """1 / y for a secret y (f_y fractional bits), result at f_out bits: ``divide`` with the
    numerator 1 public, so no second decomposition and no adder (e' = 63 - m is local), and
    the exponent factors 2^(63 - m mod 32) are extra outputs of the normalisation tables.
    Cost: 22 rounds; ``cost_per_element("reciprocal", ...)`` bytes per element (ring128
    defaults, T = 2: 648 / 648 / 824).
    Error: |r' - 1/y| <= 2^-30 / |y| + 1 ulp for every y != 0; 1 / 0 = 0. Wrong with
    probability <= 2^-41 per element."""
    shape = y.shape
    y = _flat(y)
    (ny,) = normalise(ctx, [y])
    m = ny.exp_bits
    # 1 = (1/2) 2^(a+1) with a = 0: q = M 2^(e' - 63 + f_out + f_y - P'), e' = 63 - m
    p_final, items = plan_scaling(f_out + f_y, ranges=2)

    def protocol() -> Protocol:
        f01 = _table(2, lambda b0, b1: _factor(b0, 0, True) * _factor(b1, 1, True))
        f23 = _table(2, lambda b2, b3: _factor(b2, 2, True) * _factor(b3, 3, True))
        f45 = _table(2, lambda b4, b5: _factor(b4, 4, True) * _factor(b5, 5, True))
        # scaling tables: 2^(16 (1 - m4)) times the item's value at the range r = 1 - m5
        scale = [_table(2, lambda b4, b5, t=t: _factor(b4, 4, True) * t[1 - b5]) for t, _ in items]
        got = yield [
            Table(m[0:2], [f01], R128, 0),
            Table(m[2:4], [f23], R128, 1),
            Table(m[4:6], [f45, *scale], R128, 2),
            Table([ny.sign], [_sign_alpha_table()], R128, 0),
            And((ny.nonzero, ny.sign)),
            *_lift_op(ny, 1),
        ]
        (g01,), (g23,), (g45, *g4t), (alpha,), (both,) = got[0:5]
        nonzero = ny.nonzero.xor(ny.sign).xor(both)  # [y != 0], see _nonzero_gen
        yi = _lifted(y, got[5] if ny.lift is not None else None)
        # y 2^(63-m) = (y f01) (f23 f45); the exponent factor's 2^(63-m mod 32) shares f01 f23
        a, b, g0123, (nz,) = yield [
            Mul([(yi, g01)]), Mul([(g23, g45)]), Mul([(g01, g23)]), Table([nonzero], [[0, 1]], R128, 1)
        ]
        y_n, *tnz = yield [Mul([(a, b)], trunc=64 - P), *[Mul([(t, nz)]) for t in g4t]]

        def exponent() -> Protocol:
            return (yield [Mul([(g0123, t)]) for t in tnz])

        m_final, factors = yield from parallel(_goldschmidt_gen(ctx, y_n, None, alpha, p_final), exponent())
        return _sum((yield _apply(m_final, factors, items)))

    q = drive(ctx, protocol(), "recip")
    return to_ctx_ring(ctx, q).reshape(shape)


# ----- polynomials on a normalised mantissa ---------------------------------------------

COEF_BITS = 42
"""Fractional bits of public polynomial coefficients: sum |c_i| v^i 2^(P + 42) < 2^82."""


def chebyshev_coefficients(fn, lo: float, hi: float, degree: int) -> list[float]:
    """Power-basis coefficients, in v in [-1, 1] with t = lo + (v + 1)(hi - lo) / 2, of the
    Chebyshev interpolant of fn on [lo, hi] (near-minimax; computed once at import)."""
    from numpy.polynomial import chebyshev, polynomial

    def g(v):
        return fn(lo + (v + 1) * (hi - lo) / 2)

    return [float(c) for c in chebyshev.Chebyshev.interpolate(g, degree).convert(kind=polynomial.Polynomial).coef]


def powers_gen(v: ArithmeticShares, degree: int) -> Protocol:
    """[v, v^2, ..., v^degree] for |v| <= 1 at P fractional bits: v^(2^t + i) = v^(2^t) v^i,
    so ceil(log2(degree)) rounds; products below 2^(2P) = 2^76. Error: 2^-P per product."""
    have = {1: v}
    top = 1
    while top < degree:
        wanted = [i for i in range(1, top + 1) if top + i <= degree]
        got = yield [Mul([(have[top], have[i])], trunc=P) for i in wanted]
        have.update({top + i: g for i, g in zip(wanted, got, strict=True)})
        top *= 2
    return [have[i] for i in range(1, degree + 1)]


def polynomial(ctx, powers: list[ArithmeticShares], coefficients: list[float], out_bits: int) -> Mul:
    """The op that evaluates sum c_i v^i from the powers (at P bits), at ``out_bits`` <= P + 42:
    the coefficients enter at COEF_BITS fractional bits (local products), one truncation."""
    n = powers[0].numel()
    acc = None
    for c, v in zip(coefficients[1:], powers, strict=False):
        term = v.mul_public(_const(R128, round(c * 2.0**COEF_BITS), n))
        acc = term if acc is None else acc.add(term)
    acc = acc.add_public(ctx.rank, _const(R128, round(coefficients[0] * 2.0 ** (P + COEF_BITS)), n))
    return Mul([], add=acc, trunc=P + COEF_BITS - out_bits)


# ----- square root and inverse square root ----------------------------------------------

_ROOT_DEGREE = 8
# y = y_n 2^(m+1), y_n in [1/2, 1]: sqrt(y) = 2^h sqrt(2 y_n) (m = 2h) or 2^h 2 sqrt(y_n)
# (m = 2h + 1); the two polynomials are selected by m0 in the final scaling.
_ROOT_FUNCTIONS = {
    False: (lambda t: np.sqrt(2 * t), lambda t: 2 * np.sqrt(t)),
    True: (lambda t: 1 / np.sqrt(2 * t), lambda t: 0.5 / np.sqrt(t)),
}
_ROOT_POLYS = {
    inverse: [chebyshev_coefficients(fn, 0.5, 1.0, _ROOT_DEGREE) for fn in fns]
    for inverse, fns in _ROOT_FUNCTIONS.items()
}


def _sqrt_gen(ctx, y: ArithmeticShares, ny: Normalised, f_y: int, f_out: int, inverse: bool) -> Protocol:
    """sqrt(y) or 1/sqrt(y) (``inverse``) for y at an even number f_y of fractional bits.

    y = y_n 2^(m+1) with y_n in [1/2, 1] (the ``reciprocal`` normalisation), m = 2h + m0:
    sqrt(y) = p_m0(v) 2^h and 1/sqrt(y) = p'_m0(v) 2^(-h) with v = 4 y_n - 3 and degree-8
    near-minimax polynomials (relative error 4.5e-9 for sqrt, 5.6e-8 for 1/sqrt). The
    factors [m0 = r] 2^h (or 2^(31-h)) and [y > 0] come from the normalisation tables.
    Magnitudes: powers of |v| <= 1 below 2^76; p 2^h < 2^(P+1) 2^31 = 2^70.
    Cost: 8 rounds after the 14 of ``normalise``."""
    m = ny.exp_bits
    n = y.numel()
    half = f_y // 2
    # sqrt: q = p 2^h 2^(f_out - f_y/2 - P); 1/sqrt: q = p 2^(31-h) 2^(f_out + f_y/2 - 31 - P)
    shift = (f_out - half - P) if not inverse else (f_out + half - 31 - P)

    def h_factor(bit, weight):  # h = m >> 1: bit m_(i+1) has weight 2^i
        on = (1 - bit) if inverse else bit
        return 1 << (on * weight)

    t01 = [_table(2, lambda b0, b1, r=r: (b0 == r) * h_factor(b1, 1)) for r in (0, 1)]
    t23 = _table(2, lambda b2, b3: h_factor(b2, 2) * h_factor(b3, 4))
    t45 = _table(2, lambda b4, b5: h_factor(b4, 8) * h_factor(b5, 16))
    got = yield [
        Table(m[0:2], [_pair_table(0, True), *t01], R128, 0),
        Table(m[2:4], [_pair_table(2, True), t23], R128, 1),
        Table(m[4:6], [_pair_table(4, True), t45], R128, 2),
        And((ny.nonzero, ny.sign)),
        *_lift_op(ny, 0),
    ]
    (f01, g01_0, g01_1), (f23, g23), (f45, g45), (both,) = got[0:4]
    positive = ny.nonzero.xor(both)  # [y > 0] = P0 & ~s
    yi = _lifted(y, got[4] if ny.lift is not None else None)
    a, b, c0, c1, (pos,) = yield [
        Mul([(yi, f01)]), Mul([(f23, f45)]), Mul([(g01_0, g23)]), Mul([(g01_1, g23)]),
        Table([positive], [[0, 1]], R128, 1),
    ]
    y_n, d = yield [Mul([(a, b)], trunc=64 - P), Mul([(g45, pos)])]
    v = _affine(ctx, y_n, 4, -(3 << P))  # in [-1, 1] at P bits

    def factors() -> Protocol:
        return (yield [Mul([(c0, d)]), Mul([(c1, d)])])

    powers, (f0, f1) = yield from parallel(powers_gen(v, _ROOT_DEGREE), factors())
    p0, p1 = yield [polynomial(ctx, powers, coefs, P) for coefs in _ROOT_POLYS[inverse]]
    if shift >= 0:  # left shift: exact
        scale = _const(R128, 1 << shift, n)
        (q,) = yield [Mul([(p0, f0.mul_public(scale)), (p1, f1.mul_public(scale))])]
    else:
        (q,) = yield [Mul([(p0, f0), (p1, f1)], trunc=-shift)]
    return q


def _sqrt_entry(ctx, y: ArithmeticShares, f_y: int, f_out: int, inverse: bool) -> ArithmeticShares:
    shape = y.shape
    y = _flat(y)
    if f_y % 2:  # an even number of fractional bits keeps the root's scale a power of two
        y, f_y = y.lshift(1), f_y + 1
    (ny,) = normalise(ctx, [y])
    q = drive(ctx, _sqrt_gen(ctx, y, ny, f_y, f_out, inverse), "rsqrt" if inverse else "sqrt")
    return to_ctx_ring(ctx, q).reshape(shape)


def sqrt(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """sqrt(y) for a secret y (f_y fractional bits; y must fit 62 bits, 61 for odd f_y),
    result at f_out bits. y <= 0 gives 0.
    Cost: 22 rounds; ``cost_per_element("sqrt", ...)`` bytes per element (ring128: 872 / 808
    / 760).
    Error: |s' - sqrt(y)| <= 1e-8 sqrt(y) + 1 ulp (polynomial 4.5e-9, fixed point below 2e-9);
    wrong with probability <= 2^-41 per element."""
    return _sqrt_entry(ctx, y, f_y, f_out, inverse=False)


def rsqrt(ctx, y: ArithmeticShares, f_y: int, f_out: int) -> ArithmeticShares:
    """1 / sqrt(y) for a secret y, as ``sqrt``. y <= 0 gives 0.
    Cost: 22 rounds, bytes as ``sqrt``. Error: |r' - 1/sqrt(y)| <= 1e-7 / sqrt(y) + 1 ulp
    (polynomial 5.6e-8)."""
    return _sqrt_entry(ctx, y, f_y, f_out, inverse=True)


# ----- public bounds and output precision (used by SecretTensor) ---------------------------


def output_frac_bits(
    ring: Ring, ctx_frac: int, bound_out: float, requested: int | None = None, most: int | None = None, what: str = ""
) -> int:
    """Fractional bits of a non-linear function's result.

    ``requested`` if given; otherwise the most bits that keep the result truncatable (so it
    can be rescaled and used in products), within [f + 11, f + 32] for the context's f and
    at most 52 (ring128 defaults: 31..52; float64 decodes a value exactly up to 52 fractional
    bits), at most ``most`` (the function's own precision), and fewer where the value would
    not fit the ring with one bit to spare. RangeError if nothing fits.
    """
    top = ring.bits - 1
    if requested is None:
        limit = truncatable_bits(ring)
        f = math.floor(limit - math.log2(max(bound_out, 2.0**-200)) - 1e-9)
        f = min(max(f, ctx_frac + 11), ctx_frac + 32, DECODE_EXACT_BITS)
        if most is not None:
            f = min(f, most)
        while f > 0 and not bound_out * 2.0**f < 2.0 ** (top - 1):
            f -= 1
    else:
        f = int(requested)
    if f < 0 or not bound_out * 2.0**f < 2.0**top:
        raise RangeError(
            f"{what}: results up to {bound_out:.4g} do not fit {ring.name} with {max(f, 0)} fractional bits; "
            "declare tighter bounds (or a divisor's lower bound), request fewer fractional bits, or use ring128"
        )
    return f


DECODE_EXACT_BITS = 52
"""Default results carry at most 52 fractional bits: ``reveal`` decodes them exactly."""


def truncatable_bits(ring: Ring) -> int:
    """log2 of the largest |encoded value| probabilistic truncation handles at 2^-40."""
    return ring.bits - 1 - SECURITY_BITS


def _require_normalisable(bound: float, frac_bits: int, what: str) -> None:
    if not fits_normalisation(bound, frac_bits):
        raise RangeError(
            f"{what}: |value| up to {bound:.4g} at {frac_bits} fractional bits does not fit 62 bits; the "
            "bit-length normalisation decomposes 64-bit words: declare a tighter bound or use fewer fractional bits"
        )


def _lower(lower: float | None, frac_bits: int, bound: float, what: str) -> float:
    """The divisor's public lower bound on |y|: given, or one unit in the last place."""
    if lower is None:
        return 2.0**-frac_bits
    lower = float(lower)
    if not (math.isfinite(lower) and lower > 0):
        raise RangeError(f"{what}: the divisor's lower bound must be a positive number, not {lower!r}")
    if lower > bound:
        raise RangeError(f"{what}: lower bound {lower:.4g} exceeds the divisor's bound {bound:.4g}")
    return max(lower, 2.0**-frac_bits)


def plan_divide(ring, ctx_frac, bound_x, f_x, bound_y, f_y, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound) of x / y; RangeError when the operands cannot be
    normalised or the result cannot fit. The bound is |x| / lower: a divisor below ``lower``
    (not detectable without revealing it) gives a value beyond it."""
    _require_normalisable(bound_x, f_x, "division (numerator)")
    _require_normalisable(bound_y, f_y, "division (divisor)")
    bound = bound_x / _lower(lower, f_y, bound_y, "division")
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="division")
    return f, bound * (1 + 2.0**-29) + 2.0**-f


def plan_reciprocal(ring, ctx_frac, bound_y, f_y, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound 1 / lower) of 1 / y."""
    _require_normalisable(bound_y, f_y, "reciprocal")
    bound = 1.0 / _lower(lower, f_y, bound_y, "reciprocal")
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what="reciprocal")
    return f, bound * (1 + 2.0**-29) + 2.0**-f


def plan_sqrt(ring, ctx_frac, bound_y, f_y, inverse=False, lower=None, frac_bits=None) -> tuple[int, float]:
    """(fractional bits, public bound) of sqrt(y) (or 1 / sqrt(y), bound 1 / sqrt(lower))."""
    what = "rsqrt" if inverse else "sqrt"
    _require_normalisable(bound_y, f_y + f_y % 2, what)
    bound = 1.0 / math.sqrt(_lower(lower, f_y, bound_y, what)) if inverse else math.sqrt(bound_y)
    f = output_frac_bits(ring, ctx_frac, bound, frac_bits, what=what)
    return f, bound * (1 + 1e-7) + 2.0**-f


# ----- documented costs -------------------------------------------------------------------


def cost_per_element(name: str, ring_bits: int, items: int = 0) -> tuple[int, list[int]]:
    """(rounds, bytes sent per element by parties 0, 1, 2) of a protocol, as counted from its
    structure (tests/test_division.py and tests/test_functions.py assert ``ctx.comm_stats()``
    equals n times these). ``items`` is the number of final products: ``len(plan_scaling(
    f_out + f_y - f_x, 4)[1])`` for divide, ``len(plan_scaling(f_out + f_y, 2)[1])`` for
    reciprocal, ``len(exp_items(f_out))`` for exp (fixed for the others).

    Internal arithmetic is ring128 on both rings: L = 16 bytes per ring element; boolean
    words are 8 bytes. A table over k bits with t outputs costs its sender 2 * 2^k * t * L
    and each receiver t * L; a product costs every party L (truncated: also L). Common parts:
    normalising one value (A2B + prefix-OR) costs 112 bytes per party, the A2B of exp's
    three words 192. ring64 adds the exact lift of each input (a 3-bit table).

    ================  ======  ============================================================
    protocol          rounds  bytes per element, parties 0 / 1 / 2 (T = items)
    ================  ======  ============================================================
    divide            22      280 + L(45 + 4T) / 280 + L(52 + 4T) / 280 + L(41 + 11T);
                              ring64: + 2L / + 17L / + 17L
    reciprocal        22      120 + L(25 + 4T) / 120 + L(25 + 4T) / 120 + L(22 + 11T);
                              ring64: + L / + 16L / + L
    sqrt, rsqrt       22      120 + 47L / 120 + 43L / 120 + 40L; ring64: + 16L / + L / + L
    exp               14      192 + L(39 + 11T) / 192 + L(32 + 4T) / 192 + L(35 + 4T);
                              ring64: 15 rounds, + L / + 16L / + L
    log               22      120 + 49L / 120 + 30L / 120 + 34L; ring64: + L / + 16L / + L
    sigmoid           18      192 + 102L / 192 + 67L / 192 + 82L; ring64: 19 rounds,
                              + L / + 16L / + L
    ================  ======  ============================================================

    ring128 defaults (f = 20): divide T = 2 at 31 bits (1128 / 1240 / 1288 bytes), T = 3 at
    37 (``lower=1e-3``: 1192 / 1304 / 1464); reciprocal T = 2 (648 / 648 / 824); sqrt 872 /
    808 / 760; exp (|x| <= 20, 52 bits) T = 3 (1344 / 896 / 944); log 904 / 600 / 664;
    sigmoid 1824 / 1264 / 1504.
    """
    L = 16  # noqa: N806 - the ring element size in the formulas above
    lift = ring_bits == 64
    T = items  # noqa: N806
    if name == "divide":
        base = [280 + L * (45 + 4 * T), 280 + L * (52 + 4 * T), 280 + L * (41 + 11 * T)]
        return 22, [b + lift * e for b, e in zip(base, (2 * L, 17 * L, 17 * L), strict=True)]
    if name == "reciprocal":
        base = [120 + L * (25 + 4 * T), 120 + L * (25 + 4 * T), 120 + L * (22 + 11 * T)]
        return 22, [b + lift * e for b, e in zip(base, (L, 16 * L, L), strict=True)]
    if name in ("sqrt", "rsqrt"):
        return 22, [120 + L * k + lift * e for k, e in zip((47, 43, 40), (16 * L, L, L), strict=True)]
    if name == "exp":
        base = [192 + L * (39 + 11 * T), 192 + L * (32 + 4 * T), 192 + L * (35 + 4 * T)]
        return 14 + lift, [b + lift * e for b, e in zip(base, (L, 16 * L, L), strict=True)]
    if name == "log":
        return 22, [120 + L * k + lift * e for k, e in zip((49, 30, 34), (L, 16 * L, L), strict=True)]
    if name == "sigmoid":
        return 18 + lift, [192 + L * k + lift * e for k, e in zip((102, 67, 82), (L, 16 * L, L), strict=True)]
    raise ValueError(f"no cost formula for {name!r}")
