"""Command line of the harness: its options, then run and write.

``smpc bench ARGS`` (``smpc/bench_cli.py``) starts ``main(ARGS, prog="smpc bench")`` here in a
new interpreter; ``python benchmarks/smpc_compare ARGS`` is the same run. The options live here,
with the harness, so the installed ``smpc`` package never imports this folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from smpc_compare import harness, report

ROOT = Path(__file__).resolve().parents[2]
FOLDER_PROG = "python benchmarks/smpc_compare"
"""How the harness names itself when run as a folder (``smpc bench`` passes its own name)."""

DESCRIPTION = """\
Side-by-side benchmark of smpc (3 party processes, gRPC with mutual TLS) against CrypTen 0.4.1
(3 processes, TFP and TTP providers) on one fixed workload, from a source checkout.

  smpc bench                          N = 1e6, every system, loopback
  smpc bench --n 1e4 --no-crypten     quick, smpc only
  smpc bench --wan 20,100 --baseline benchmarks/results/compare.json
                                      20 ms RTT, 100 Mbit/s per link, growth against a LAN run
  smpc bench --no-crypten --ops shuffle,sort,multi_lending --lending-rows 1e6
                                      the private-join ops (smpc only), multi_lending at 1e6 rows per bank

Writes a markdown report, the JSON and a PNG chart (--out, default benchmarks/results/).
`smpc bench --repo PATH ...` runs the harness of the checkout at PATH."""

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
    """The harness's options (the same under ``smpc bench`` and ``python benchmarks/smpc_compare``)."""
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
    p.add_argument("--render", metavar="JSON", help="only re-render the report (markdown, PNG) of an earlier JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def execute(args, command: str = "") -> int:
    """Run the comparison for parsed ``args``; print the markdown; return an exit code."""
    from smpc.errors import SmpcError

    if args.render:
        import json

        source = Path(args.render)
        results = json.loads(source.read_text())
        out = Path(args.out) if args.out else source.parent
        paths = report.write(results, out, args.name or source.stem)
        print(report.markdown(results))
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
        return 0
    systems = list(args.systems)
    if args.no_crypten:
        systems = [s for s in systems if s not in harness.CRYPTEN_SYSTEMS]
    if not systems:
        raise SmpcError("no system left to run (--no-crypten with --systems naming only CrypTen)")
    if any(s in harness.CRYPTEN_SYSTEMS for s in systems):
        ok, why = harness.crypten_status()
        if not ok:
            raise SmpcError(
                f"CrypTen 0.4.1 is not importable here ({why}). Install it as the Makefile does "
                "(`.venv/bin/pip install --no-deps crypten==0.4.1 && .venv/bin/pip install onnx omegaconf pyyaml`) "
                "or pass --no-crypten to benchmark smpc alone."
            )
    if args.wan:
        from smpc_compare.relay import LinkShape

        try:
            LinkShape.parse(args.wan)
        except ValueError as exc:
            raise SmpcError(str(exc)) from None
    if args.reps < 1 or args.warmup < 0:
        raise SmpcError("--reps must be >= 1 and --warmup >= 0")
    settings = {
        "n": args.n, "ops": list(args.ops), "systems": systems, "reps": args.reps, "warmup": args.warmup,
        "seed": args.seed, "threads": args.threads, "wan": args.wan, "decode_fix": args.crypten_decode_fix,
        "timeout": args.timeout, "start_timeout": min(args.timeout, 600.0), "command": command,
        "lending_rows": getattr(args, "lending_rows", None),
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results"
    stem = args.name or ("compare-wan" if args.wan else "compare")
    settings["on_op"] = lambda partial: report.save_json(partial, out / f"{stem}.json")
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    results = harness.run(settings, log=log)
    if args.baseline:
        results["baseline"] = report.load_baseline(args.baseline)
        results["baseline_file"] = str(args.baseline)
    paths = report.write(results, out, stem)
    print(report.markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def build_parser(prog: str = FOLDER_PROG) -> argparse.ArgumentParser:
    """The harness's parser, named ``prog`` in its usage and in the command a report shows."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def command_line(args, prog: str = FOLDER_PROG) -> str:
    """The options that differ from the defaults, as a command to copy."""
    defaults = vars(build_parser().parse_args([]))
    parts = [prog]
    for key, value in vars(args).items():
        if key not in defaults or value == defaults[key] or key == "quiet":
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, ",".join(value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def main(argv: list[str] | None = None, prog: str = FOLDER_PROG) -> int:
    from smpc.errors import SmpcError

    args = build_parser(prog).parse_args(argv)
    try:
        return execute(args, command=command_line(args, prog))
    except SmpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; parties and relays stopped", file=sys.stderr)
        return 130
