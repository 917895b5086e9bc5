"""Turn pytest-benchmark JSON (``make bench`` writes benchmarks/results/kernels.json) into a
markdown table of medians.

    python benchmarks/report.py benchmarks/results/kernels.json
    python benchmarks/report.py new.json --baseline old.json     # adds before / speed-up
    python benchmarks/report.py kernels.json --only 1e6           # rows whose name contains 1e6

Columns: median time, interquartile range, rounds, and from ``extra_info`` the throughput
(PRG bytes/s, elements/s) or the communication of one op (max bytes sent by a party, bytes
per element, rounds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _extra(info: dict) -> str:
    parts = []
    if "bytes_per_s_median" in info:
        parts.append(f"{info['bytes_per_s_median'] / 1e6:,.0f} MB/s")
    if "elements_per_s_median" in info:
        parts.append(f"{info['elements_per_s_median'] / 1e6:,.0f} M elem/s")
    if "bytes_sent_max" in info:
        per = info.get("bytes_per_element_max")
        comm = f"{_bytes(info['bytes_sent_max'])}/party"
        if per is not None:
            comm += f" ({per:g} B/elem)"
        parts.append(f"{comm}, {info['rounds']} round{'s' if info['rounds'] != 1 else ''}")
    return "; ".join(parts)


def _name(bench: dict) -> str:
    name = bench["name"]
    return name[len("test_"):] if name.startswith("test_") else name


def render(data: dict, baseline: dict | None = None, only: str | None = None) -> str:
    before = {}
    if baseline is not None:
        before = {b["fullname"]: b["stats"]["median"] for b in baseline["benchmarks"]}
    header = ["group", "benchmark", "median", "IQR", "rounds"]
    if baseline is not None:
        header += ["before", "speed-up"]
    header.append("notes")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    benches = sorted(data["benchmarks"], key=lambda b: (b.get("group") or "", _name(b)))
    for b in benches:
        if only and only not in b["name"]:
            continue
        s = b["stats"]
        row = [b.get("group") or "", f"`{_name(b)}`", _time(s["median"]), _time(s["iqr"]), str(s["rounds"])]
        if baseline is not None:
            old = before.get(b["fullname"])
            row += [_time(old), f"{old / s['median']:.2f}x"] if old else ["", ""]
        row.append(_extra(b.get("extra_info", {})))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine(data: dict) -> str:
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    bits = [
        cpu.get("brand_raw", m.get("processor", "")),
        f"{m.get('nproc', '?')} cores",
        f"python {m.get('python_version', '?')}",
        f"torch {m.get('torch', '?')} ({m.get('torch_threads', '?')} threads)",
        f"C ring kernels: {'yes' if m.get('c_ring_kernels') else 'no'}",
    ]
    if m.get("malloc_tuning"):
        bits.append(f"malloc tuning: {m['malloc_tuning']}")
    return ", ".join(b for b in bits if b) + f"; run {data.get('datetime', '?')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark JSON file")
    parser.add_argument("--baseline", help="an earlier JSON to compare against")
    parser.add_argument("--only", help="keep benchmarks whose name contains this text (e.g. 1e6)")
    args = parser.parse_args(argv)
    data = _load(args.json)
    baseline = _load(args.baseline) if args.baseline else None
    print(f"Machine: {machine(data)}\n")
    print(render(data, baseline, args.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
