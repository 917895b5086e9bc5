"""Command line of the harness: parse (options defined in ``smpc.bench_cli``), run, write."""

from __future__ import annotations

import sys
from pathlib import Path

from smpc_compare import harness, report

ROOT = Path(__file__).resolve().parents[2]


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


def build_parser():
    from smpc import bench_cli

    parser = bench_cli.build_parser()
    parser.prog = "python benchmarks/smpc_compare"
    return parser


def command_line(args) -> str:
    """The options that differ from the defaults, as a command to copy."""
    from smpc.bench_cli import command_line as smpc_command_line

    return smpc_command_line(args, prefix="python benchmarks/smpc_compare")


def main(argv: list[str] | None = None) -> int:
    from smpc.errors import SmpcError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return execute(args, command=command_line(args))
    except SmpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; parties and relays stopped", file=sys.stderr)
        return 130
