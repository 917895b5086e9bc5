"""The round engine: protocol steps that several protocols batch into one message per peer.

A round-based protocol is a generator: each ``yield [ops]`` is one round, and it receives
the ops' results in order. ``drive`` runs one to completion, ``parallel`` runs several side by
side (their ops of the same round travel in one message per peer), ``execute`` runs the ops
of one round. The ops: ``Mul`` (sums of products, optionally truncated), ``And`` (boolean
ANDs) and ``Table`` (table B2A: a three-party OT over a public table, which also injects
bits and power-of-two factors). Every PRG draw happens in an op's ``prepare``, in op order on
every party, so the pairwise streams stay aligned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smpc.prg import PRG
from smpc.protocols import arithmetic
from smpc.protocols.fused import (
    add_random2_,
    add_truncate_negated_,
    aes_kernels,
    rss_product_random,
    rss_product_truncated,
    uniform,
    xor_random2_,
)
from smpc.ring import RING64, Ring, broadcast_shape
from smpc.sharing import N_COMPUTE, ArithmeticShares, BooleanShares


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
