"""The examples in the public API's docstrings, and the README's first example, run as shown.

The docstrings are found through the public names (``smpc.SecretTensor``, ``smpc.where``, ...),
not through module paths, so they follow a name wherever its code moves. Every public function
and class needs an example of its own, except the runtime entry points shown by the package
docstring's example.
"""

from __future__ import annotations

import contextlib
import doctest
import inspect
import io
import re
from pathlib import Path

import pytest

import smpc

ROOT = Path(__file__).resolve().parents[1]
SHOWN_BY_THE_PACKAGE_EXAMPLE = {"simulate": "smpc.simulate(", "Context": "ctx.rank"}
"""Public names whose example is the package docstring's (it must use them as given here)."""


def _public_objects() -> dict[str, object]:
    objects = {}
    for name in smpc.__all__:
        obj = getattr(smpc, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            continue  # the errors are shown where they are raised (RangeError: SecretTensor)
        objects[f"smpc.{name}"] = obj
    return objects


def _doctests() -> dict[str, doctest.DocTest]:
    finder = doctest.DocTestFinder()
    found = {t.name: t for t in finder.find(smpc, "smpc", globs={}) if t.examples}
    for name, obj in _public_objects().items():
        for test in finder.find(obj, name, module=inspect.getmodule(obj), globs={}):
            if test.examples:
                found.setdefault(test.name, test)
    return found


DOCTESTS = _doctests()


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_docstring_example(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    result = runner.run(DOCTESTS[name], out=report.write)
    assert result.failed == 0, report.getvalue()


def test_every_public_name_has_an_example():
    missing = [name for name in _public_objects()
               if name.removeprefix("smpc.") not in SHOWN_BY_THE_PACKAGE_EXAMPLE
               and name not in DOCTESTS]
    assert not missing, f"public names without a docstring example: {missing}"
    package_example = "\n".join(ex.source for ex in DOCTESTS["smpc"].examples)
    for name, usage in SHOWN_BY_THE_PACKAGE_EXAMPLE.items():
        assert usage in package_example, f"the package docstring's example must show {name} ({usage})"


def test_the_readme_example_prints_what_it_says():
    """The README's first Python block ends with a comment holding what it prints."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    expected = block.rstrip().splitlines()[-1]
    assert expected.startswith("# "), "the README example's last line shows its output as a comment"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), {})
    assert printed.getvalue().strip() == expected.removeprefix("# ")
