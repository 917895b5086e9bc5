"""``smpc bench``: a launcher for the side-by-side benchmark against CrypTen in a source checkout.

    smpc bench                                   # N = 1e6, smpc and CrypTen TFP + TTP, loopback
    smpc bench --n 1e4 --no-crypten              # quick: smpc only
    smpc bench --help                            # the harness's options
    smpc bench --repo PATH ...                   # the harness of the checkout at PATH

The harness, its options included, lives in ``benchmarks/smpc_compare/`` of the repository and is
not part of the installed package (CrypTen is a benchmark-only dependency). This command finds
that folder and replaces itself with ``python -c "...main(ARGS, prog='smpc bench')"``: the same
process id, so a signal sent to ``smpc bench`` reaches the harness that stops its parties. The
``smpc`` package never imports the harness.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from smpc.errors import SmpcError

PROG = "smpc bench"
HARNESS = Path("smpc_compare") / "harness.py"
"""What marks a ``benchmarks`` folder as holding the harness."""


def find_harness(repo: str | None = None) -> Path:
    """The ``benchmarks`` folder that holds the ``smpc_compare`` harness, or a clear SmpcError."""
    candidates = [Path(repo)] if repo else [Path(__file__).resolve().parents[1], Path.cwd()]
    for root in candidates:
        folder = root / "benchmarks"
        if (folder / HARNESS).is_file():
            return folder
    where = ", ".join(str(c / "benchmarks" / "smpc_compare") for c in candidates)
    raise SmpcError(
        "smpc bench runs the side-by-side harness from a source checkout, and benchmarks/smpc_compare/ was not "
        f"found (looked in {where}). It is not shipped in the installed package: clone the repository, "
        "install it with `make test` (or `pip install -e '.[dev]'`), and run `smpc bench` there or pass "
        "--repo PATH_TO_CHECKOUT."
    )


def split_repo(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--repo PATH`` (or ``--repo=PATH``) is the launcher's own option; the rest is the harness's."""
    repo, rest = None, []
    words = iter(argv)
    for word in words:
        if word == "--repo":
            repo = next(words, None)
            if repo is None:
                raise SmpcError("smpc bench: --repo needs a path to a source checkout")
        elif word.startswith("--repo="):
            repo = word.removeprefix("--repo=")
        else:
            rest.append(word)
    return repo, rest


def harness_command(argv: list[str]) -> list[str]:
    """The interpreter command line that runs the harness with ``argv`` (``--repo`` resolved)."""
    repo, rest = split_repo(argv)
    folder = find_harness(repo)
    program = (f"import sys; sys.path.insert(0, {str(folder)!r}); "
               f"from smpc_compare.cli import main; sys.exit(main(sys.argv[1:], prog={PROG!r}))")
    return [sys.executable, "-c", program, *rest]


def _run(args) -> int:
    command = harness_command(args.harness_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached


def add_parser(sub) -> None:
    """Add ``smpc bench`` to the ``smpc`` command: every word after it goes to the harness."""
    # no option prefix of its own (and no --help): `--n 1e4` and `--help` are plain words here,
    # parsed, checked and explained by the harness's own parser
    bench = sub.add_parser("bench", help="side-by-side benchmark against CrypTen (from a source checkout; "
                                         "`smpc bench --help` for its options)",
                           add_help=False, prefix_chars="+")
    bench.add_argument("harness_args", nargs="*", metavar="ARGS")
    bench.set_defaults(func=_run)
