"""Generate the Python gRPC code for protos/smpc/v1/*.proto (run by `make proto`).

The output lands in the installed package as ``smpc/v1/`` -- the Python module path that
protoc derives from the proto package ``smpc.v1`` -- so the generated imports
(``from smpc.v1 import peer_pb2``) work without rewriting. ``--out DIR`` writes elsewhere;
the drift test uses it to regenerate into a temporary folder and compare byte for byte.

Usage: python protos/generate.py [--out DIR]   (default: the repository root)
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
ROOT = PROTOS.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "smpc" / "v1").glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc into ``out``; return the generated files (under out/smpc/v1)."""
    from grpc_tools import protoc  # dev dependency (grpcio-tools)

    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTOS}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *proto_files(),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    target = out / "smpc" / "v1"
    return sorted(p for p in target.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repository root)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"generated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
