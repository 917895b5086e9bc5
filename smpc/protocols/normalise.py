"""Normalisation: the bit length of secrets, as a floating-point unit finds it.

The leading one of |v| is found on the boolean decomposition of v (A2B, then a prefix-OR);
its position m (6 bits, |v| in [2^m, 2^(m+1)]) is computed per share, locally. Power-of-two
factors of m come from table B2A (``rounds.Table``) over pairs of its bits, so a secret is
scaled into [1/2, 1] exactly. ``division`` and ``functions`` build on this; the mantissas
they compute carry ``MANTISSA_BITS`` (P in their formulas) fractional bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smpc.errors import RangeError
from smpc.protocols import boolean
from smpc.protocols.local import bit_table, contiguous_shares, embed_unsigned
from smpc.protocols.rounds import And, Field, Protocol, Table
from smpc.ring import RING64, RING128, c_kernels
from smpc.sharing import ArithmeticShares, BooleanShares

MANTISSA_BITS = 38
"""Fractional bits of internal mantissas: products of two stay below 2^(2P + 5) < 2^82."""

TRUNC_MAGNITUDE_BITS = 82
"""Every internal probabilistic truncation acts on a value below 2^82 (failure <= 2^-45)."""


def fits_normalisation(bound: float, frac_bits: int) -> bool:
    """Whether values up to ``bound`` at ``frac_bits`` fit the 62 bits normalisation handles."""
    return bound * 2.0**frac_bits < 2.0**62


def require_normalisable(bound: float, frac_bits: int, what: str) -> None:
    """RangeError (before any message) unless ``fits_normalisation``; ``what`` names the operand."""
    if not fits_normalisation(bound, frac_bits):
        raise RangeError(
            f"{what}: |value| up to {bound:.4g} at {frac_bits} fractional bits does not fit 62 bits; the "
            "bit-length normalisation decomposes 64-bit words: declare a tighter bound or use fewer fractional bits"
        )


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
        stacked = ArithmeticShares.cat(low, 0) if len(low) > 1 else contiguous_shares(low[0])
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


def lifted(x: ArithmeticShares, correction: list | None) -> ArithmeticShares:
    """x in ring128: itself, or a ring64 sharing plus its lift correction."""
    return x if correction is None else embed_unsigned(x).add(correction[0])


def lift_ops(info: Normalised, sender: int) -> list:
    """The table op that lifts a ring64 input exactly into ring128 (``lifted`` adds its output);
    none on ring128."""
    return [] if info.lift is None else [Table(info.lift, [boolean.lift_table()], RING128, sender)]


def power_factor(bit: int, position: int, invert: bool, step: int = 1) -> int:
    """2^(step * 2^position) if the bit (or its complement) is set, else 1."""
    on = (1 - bit) if invert else bit
    return 1 << (on * step * (1 << position))


def pair_table(i: int, invert: bool, step: int = 1) -> list[int]:
    """Over bits i, i+1 of an exponent: the factor 2^(step (b_i 2^i + b_{i+1} 2^(i+1))), with
    1 - b for ``invert`` (then the product over all pairs is 2^(step (63 - e)))."""
    return bit_table(2, lambda b0, b1: power_factor(b0, i, invert, step) * power_factor(b1, i + 1, invert, step))


def nonzero_gen(info: Normalised) -> Protocol:
    """[v != 0] = P0 | s = P0 ^ s ^ (P0 & s) (P0 alone misses v = -1 ulp). 1 round."""
    ((both,),) = yield [And((info.nonzero, info.sign))]
    return info.nonzero.xor(info.sign).xor(both)


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
