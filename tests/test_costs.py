"""docs/costs.md is generated from code; this fails when someone changes a protocol's cost
without regenerating it (`make costs`)."""

import re
from pathlib import Path

from smpc import costs
from smpc.protocols import division
from smpc.protocols.division import cost_per_element

COSTS_MD = Path(__file__).resolve().parents[1] / "docs" / "costs.md"


def test_cost_table_is_up_to_date():
    assert COSTS_MD.exists(), "docs/costs.md is missing: run `make costs`"
    assert COSTS_MD.read_text(encoding="utf-8") == costs.render(), "docs/costs.md is stale: run `make costs`"


def test_headline_costs_match_the_documented_protocols():
    """The numbers the docstrings promise: mul is one round and one ring element per element
    per party; < is 10 rounds and one ring element per party for its bit injection; reveal to
    one party sends nothing to the others; reveals send only the bytes the bound needs and
    one spare byte."""
    table = costs.measure(128)
    assert table["mul (integer mode)"] == (1, [16.0, 16.0, 16.0])
    assert table["mul (fixed point)"] == (1, [16.0, 16.0, 16.0])
    assert table["less than"][0] == 10
    assert table["equal"][0] == 9
    rounds, per_party = table["reveal to one party"]
    assert rounds == 1 and per_party[0] == 0 and per_party[1] == 0
    # reveals send the low bytes the bound needs and a spare byte: 1e3 at 20 fractional bits
    # in 4 + 1, a bit in 1 + 1
    assert table["reveal to all"] == (1, [5.0, 5.0, 5.0])
    assert table["reveal a 0/1 secret"] == (1, [2.0, 2.0, 2.0])


def _triples(text: str) -> list[tuple[int, int, int]]:
    flat = " ".join(text.split())
    # three-digit figures: bytes, not "parties 0 / 1 / 2"
    return [tuple(map(int, m)) for m in re.findall(r"(\d{3,}) / (\d{3,}) / (\d{3,})", flat)]


def _allowed(name: str) -> set[tuple[int, int, int]]:
    return {tuple(cost_per_element(name, bits, items)[1]) for bits in (64, 128) for items in range(8)}


def test_byte_figures_quoted_in_the_division_docstrings_are_the_counted_ones():
    """Docstrings quote per-party bytes for their defaults; each quoted triple must be one that
    ``cost_per_element`` (which the protocol tests check against ``ctx.comm_stats()``) gives."""
    for fn, name in ((division.divide, "divide"), (division.reciprocal, "reciprocal"), (division.sqrt, "sqrt")):
        quoted = _triples(fn.__doc__)
        assert quoted, f"{name}'s docstring quotes no bytes"
        assert set(quoted) <= _allowed(name), (name, quoted)
    summary = " ".join(cost_per_element.__doc__.split()).split("ring128 defaults", 1)[1]
    names = ("divide", "reciprocal", "sqrt", "exp", "log", "sigmoid")
    checked = 0
    for part in summary.split(";"):
        name = next(n for n in names if n in part.split())
        for triple in _triples(part):
            assert triple in _allowed(name), (name, triple)
            checked += 1
    assert checked == 7
