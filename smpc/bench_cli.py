"""``smpc bench``: the side-by-side benchmark against CrypTen, from a source checkout.

    smpc bench                                   # N = 1e6, smpc and CrypTen TFP + TTP, loopback
    smpc bench --n 1e4 --no-crypten              # quick: smpc only
    smpc bench --wan 20 --baseline benchmarks/results/compare.json   # 20 ms RTT, growth vs LAN

The harness itself lives in ``benchmarks/smpc_compare/`` of the repository; it is not part of the
installed package (CrypTen is a benchmark-only dependency), so this command runs it from the
checkout that holds this ``smpc`` package -- or from ``--repo``. It writes a markdown report,
the JSON and a PNG chart to ``--out`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from smpc.errors import SmpcError

DESCRIPTION = """\
Side-by-side benchmark of smpc (3 party processes, gRPC with mutual TLS) against CrypTen 0.4.1
(3 processes, TFP and TTP providers) on one fixed workload, from a source checkout.

  smpc bench                          N = 1e6, every system, loopback
  smpc bench --n 1e4 --no-crypten     quick, smpc only
  smpc bench --wan 20,100 --baseline benchmarks/results/compare.json
                                      20 ms RTT, 100 Mbit/s per link, growth against a LAN run
  smpc bench --no-crypten --ops shuffle,sort,multi_lending --lending-rows 1e6
                                      the private-join ops (smpc only), multi_lending at 1e6 rows per bank

Writes a markdown report, the JSON and a PNG chart (--out, default benchmarks/results/)."""

OPS = ["share", "mul", "lt", "sum", "div", "matmul256", "matmul1000", "lending"]
"""The default op list (both systems)."""
JOIN_OPS = ["shuffle", "sort", "multi_lending"]
"""Opt-in private-join ops, smpc only: CrypTen has no oblivious shuffle or sort."""
SYSTEMS = ["smpc", "crypten-tfp", "crypten-ttp"]


def _count(text: str) -> int:
    """1e6, 1000000 or 1_000_000."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number such as 1e4")
    return int(value)


def _list(choices: list[str]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The harness's options (shared by ``smpc bench`` and ``python benchmarks/smpc_compare``)."""
    p.add_argument("--n", type=_count, default=10**6, help="elements per input (default 1e6; x/y uses min(n, 1e5))")
    p.add_argument("--ops", type=_list(OPS + JOIN_OPS), default=OPS,
                   help=f"comma-separated subset of {','.join(OPS + JOIN_OPS)} (default: {','.join(OPS)}; "
                        f"{','.join(JOIN_OPS)} run on smpc only)")
    p.add_argument("--lending-rows", type=_count, default=None,
                   help="multi_lending's rows per bank (default min(n, 1e5); e.g. 1e6)")
    p.add_argument("--systems", type=_list(SYSTEMS), default=SYSTEMS,
                   help="comma-separated subset of smpc,crypten-tfp,crypten-ttp (default: all)")
    p.add_argument("--no-crypten", action="store_true", help="smpc only (e.g. when CrypTen is not installed)")
    p.add_argument("--reps", type=int, default=5, help="timed runs per op and system (default 5; the median is shown)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per party process (default 1)")
    p.add_argument("--wan", metavar="RTT_MS[,RATE_MBIT]",
                   help="emulate a WAN: every party-to-party connection through a delay relay on 127.0.0.1")
    p.add_argument("--baseline", metavar="JSON", help="an earlier (LAN) result: adds WAN-minus-LAN columns")
    p.add_argument("--crypten-decode-fix", action="store_true",
                   help="decode CrypTen's results with its negative-decode bug fixed (errors are always "
                        "reported both ways in the JSON)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds the parties may take for one step, and a party may wait for one message from "
                        "a peer (default 3600; a stalled op fails after this and the run goes on)")
    p.add_argument("--out", help="output folder (default: benchmarks/results/ of the checkout)")
    p.add_argument("--name", help="file stem of the outputs (default compare, or compare-wan)")
    p.add_argument("--repo", help="the source checkout holding benchmarks/smpc_compare/ (default: from smpc's path)")
    p.add_argument("--render", metavar="JSON", help="only re-render the report (markdown, PNG) of an earlier JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def find_harness(repo: str | None = None) -> Path:
    """The ``benchmarks`` folder that holds the ``smpc_compare`` harness, or a clear SmpcError."""
    candidates = [Path(repo)] if repo else [Path(__file__).resolve().parents[1], Path.cwd()]
    for root in candidates:
        folder = root / "benchmarks"
        if (folder / "smpc_compare" / "harness.py").is_file():
            return folder
    where = ", ".join(str(c / "benchmarks" / "smpc_compare") for c in candidates)
    raise SmpcError(
        "smpc bench runs the side-by-side harness from a source checkout, and benchmarks/smpc_compare/ was not "
        f"found (looked in {where}). It is not shipped in the installed package: clone the repository, "
        "install it with `make test` (or `pip install -e '.[dev]'`), and run `smpc bench` there or pass "
        "--repo PATH_TO_CHECKOUT."
    )


def load_harness(repo: str | None = None):
    """Import ``smpc_compare`` (benchmarks/smpc_compare) from the checkout; returns its cli module."""
    folder = find_harness(repo)
    path = str(folder)
    if path not in sys.path:
        # the harness's package is named ``smpc_compare``, not ``benchmarks.compare``: CrypTen's
        # wheel installs an unrelated top-level ``benchmarks`` that would shadow ours
        sys.path.insert(0, path)
    import importlib

    loaded = sys.modules.get("smpc_compare")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != folder / "smpc_compare":
        raise SmpcError(f"another module named 'smpc_compare' is already imported ({loaded.__file__})")
    return importlib.import_module("smpc_compare.cli")


def command_line(args, prefix: str = "smpc bench") -> str:
    """The options that differ from the defaults, as a command to copy."""
    defaults = vars(build_parser().parse_args([]))
    parts = [prefix]
    for key, value in vars(args).items():
        if key not in defaults or value == defaults[key] or key in ("func", "quiet"):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, ",".join(value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with the harness's options (``python benchmarks/smpc_compare``)."""
    parser = argparse.ArgumentParser(prog="smpc bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def _run(args) -> int:
    cli = load_harness(args.repo)
    return cli.execute(args, command=command_line(args))


def add_parser(sub) -> None:
    """Add ``smpc bench`` to the ``smpc`` command."""
    bench = sub.add_parser("bench", help="side-by-side benchmark against CrypTen (from a source checkout)",
                           description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(bench)
    bench.set_defaults(func=_run)
