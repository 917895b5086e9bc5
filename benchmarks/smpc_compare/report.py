"""Render the results: a markdown report, the JSON, and a PNG bar chart (log scale)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from smpc_compare.workload import EXACT_OPS, OP_ORDER

SHORT = {"smpc": "smpc", "crypten-tfp": "TFP", "crypten-ttp": "TTP"}
TARGET_OPS = ("mul", "lt", "lending")


def _t(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _b(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _e(x: float | None) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    if math.isnan(x):
        return "nan"
    return f"{x:.2g}"


def _ops(results: dict) -> list[str]:
    return [k for k in OP_ORDER if k in results["ops"]] + [k for k in results["ops"] if k not in OP_ORDER]


def _rec(results: dict, op: str, system: str) -> dict | None:
    return results["ops"][op]["systems"].get(system)


def _cell_time(rec: dict | None) -> str:
    if rec is None:
        return "–"
    if rec["status"] != "ok":
        return rec["status"]
    return _t(rec.get("median_s"))


def ratio(results: dict, op: str, other: str) -> float | None:
    a, b = _rec(results, op, "smpc"), _rec(results, op, other)
    if not a or not b or a["status"] != "ok" or b["status"] != "ok" or not a.get("median_s") or not b.get("median_s"):
        return None
    return a["median_s"] / b["median_s"]


def _comm(rec: dict | None) -> str:
    if rec is None or rec["status"] != "ok" or not rec.get("bytes_sent_per_party"):
        return "–"
    return f"{_b(max(rec['bytes_sent_per_party']))} / {max(rec['rounds_per_party'])}"


def _err(errs: dict | None, counts: bool = False) -> str:
    if not errs:
        return "–"
    text = _e(errs["max_abs_err"]) if counts else f"{_e(errs['max_abs_err'])} / {_e(errs['max_rel_err'])}"
    if errs.get("wrong"):
        text += f" ({errs['wrong']:,} wrong)"
    if errs.get("finite") is False:
        text += " (non-finite values)"
    return text


def machine_line(results: dict) -> str:
    m = results["machine"]
    mem = f", {m['memory_bytes'] / 2**30:.0f} GiB RAM" if m.get("memory_bytes") else ""
    bits = [f"{m['cpu']}, {m['cores']} cores{mem}", f"Linux {m['kernel']}", f"Python {m['python']}",
            f"torch {m['torch']} ({m['torch_threads_per_party']} thread per party)",
            f"smpc {m['smpc']} (C ring kernels: {'yes' if m['c_ring_kernels'] else 'no'})"]
    if m.get("crypten"):
        bits.append(f"CrypTen {m['crypten']}")
    load = m.get("load_average_start")
    if load:
        bits.append(f"load average at start {load[0]:.2f}" + (
            f", at end {m['load_average_end'][0]:.2f}" if m.get("load_average_end") else ""))
    return "; ".join(bits) + f"; {m['date']}"


def markdown(results: dict) -> str:
    systems = results["systems"]
    others = [s for s in systems if s != "smpc"]
    labels = results["system_labels"]
    lines = [
        f"Mode: **{results['mode'].upper()}**: {results['mode_description']}.",
        f"N = {results['n']:,} (x/y: {min(results['n'], 100_000):,}"
        + (f"; multi_lending: {results['lending_rows']:,} rows per bank"
           if "multi_lending" in results["ops"] and results.get("lending_rows") else "")
        + f"); seed {results['seed']}; "
        f"median of {results['reps']} timed runs after {results['warmup']} warm-up run(s), systems alternating; "
        "time of a run = max over the 3 parties.",
        f"Machine: {machine_line(results)}.",
    ]
    if results.get("command"):
        lines.append(f"Command: `{results['command']}`")
    lines.append("")
    head = ["op", "smpc config", *[f"{labels[s]}" for s in systems]] + [f"smpc/{SHORT[s]}" for s in others]
    if results.get("baseline"):
        head += ["smpc LAN", "smpc WAN−LAN", "smpc rounds × RTT/2"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get("baseline") or {}
    for op in _ops(results):
        o = results["ops"][op]
        row = [o["op"]["label"], o["op"]["smpc_config"]] + [_cell_time(_rec(results, op, s)) for s in systems]
        for s in others:
            r = ratio(results, op, s)
            row.append("–" if r is None else f"{r:.3g}")
        if results.get("baseline"):
            rec = _rec(results, op, "smpc")
            lan = base.get(op)
            row.append(_t(lan))
            wan_s = rec.get("median_s") if rec and rec["status"] == "ok" else None
            row.append(_t(wan_s - lan) if (wan_s is not None and lan is not None) else "–")
            rounds = max(rec["rounds_per_party"]) if rec and rec.get("rounds_per_party") else None
            rtt = results["wan"]["rtt_ms"] / 1000
            row.append(f"{rounds} × {rtt / 2 * 1e3:g} ms = {_t(rounds * rtt / 2)}" if rounds is not None else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head = ["op"] + [f"{SHORT[s]} bytes / rounds" for s in systems] + [f"{SHORT[s]} peak RSS" for s in systems]
    if results["mode"] == "wan":
        head += [f"{SHORT[s]} wire bytes (all parties)" for s in systems]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in _ops(results):
        recs = [_rec(results, op, s) for s in systems]
        row = [results["ops"][op]["op"]["label"]] + [_comm(r) for r in recs]
        row += [_b(max(r["peak_rss_per_party"])) if r and any(r["peak_rss_per_party"]) else "–" for r in recs]
        if results["mode"] == "wan":
            row += [_b(r.get("wire_bytes_median")) if r else "–" for r in recs]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head = ["op"] + [f"{SHORT[s]} max abs / rel error" for s in systems]
    if others:
        head += [f"{SHORT[s]} with decode fix" for s in others]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in _ops(results):
        if op == "share":
            continue
        counts = op in ("lt", "lending", *EXACT_OPS)
        recs = [_rec(results, op, s) for s in systems]
        row = [results["ops"][op]["op"]["label"]]
        row += [_err(r.get("errors") if r else None, counts) if not r or r["status"] == "ok" else r["status"]
                for r in recs]
        for s in others:
            r = _rec(results, op, s)
            row.append(_err(r.get("errors_decode_fix"), counts) if r and r["status"] == "ok" else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Bytes / rounds: the most any party sent in one run, as each system counts it: smpc's "
        "`ctx.comm_stats()` (payload bytes sent; rounds = communication steps), CrypTen's "
        "`comm.get_communication_stats()` (8 bytes per element of every send, receive and collective it "
        "takes part in, so received data counts too; rounds = communication calls). Peak RSS: the largest "
        "party's VmHWM during the op (interpreter, torch and transport included). Errors against float64: "
        "max |got − ref|, and max |got − ref| / |ref| over |ref| ≥ 1, worst over all runs; \"wrong\": "
        "results off by 0.5 or more (of N; x/y: of 1e5; matmul: of m²). "
        "CrypTen decodes to float32 (its errors include float32 rounding)."
        + (" The CrypTen columns use the decode fix." if results.get("crypten_decode_fix") else "")
    )
    if any(op in results["ops"] for op in EXACT_OPS):
        lines += ["", (
            "Private-join ops (smpc only; CrypTen 0.4.1 has no oblivious shuffle or sort: n/a), checked exactly "
            "on integers, not against float64. shuffle / sort: the time covers the protocol (sort: shuffle, "
            "quicksort with opened comparisons, gather), not the opening of the rows for the check, which "
            "follows untimed; error = rows that differ from the input rows as a multiset (shuffle) or from "
            "the input sorted by key (sort). multi_lending: end to end (id checks, hashing, sharing, join, "
            "totals, thresholds, flags and the flagged count back to every bank), against the plaintext twin "
            "`multi_lending_plain`: error = |flagged count − plaintext|; \"wrong\" adds the flagged ids that "
            "differ over all banks. A party's peak RSS counts what earlier ops of the same run left resident "
            "(`rss_before_setup_per_party` in the JSON): run an op alone (`--ops multi_lending`) for its own.")]
    notes = [f"- {labels[s]}, {results['ops'][op]['op']['label']}: {_rec(results, op, s)['message'].splitlines()[0]}"
             for op in _ops(results) for s in systems
             if _rec(results, op, s) and _rec(results, op, s)["status"] != "ok"]
    if notes:
        lines += ["", "Not measured:", *notes]
    lines += ["", *targets(results)]
    return "\n".join(lines) + "\n"


def targets(results: dict) -> list[str]:
    """The issue's targets, reported (never asserted)."""
    out = ["Targets (reported, not asserted):"]
    crypten = [s for s in ("crypten-tfp", "crypten-ttp") if s in results["systems"]]
    for op in TARGET_OPS:
        if op not in results["ops"] or not crypten:
            continue
        parts = []
        for s in crypten:
            r = ratio(results, op, s)
            if r is not None:
                parts.append(f"{r:.3g} vs {SHORT[s]} ({'met' if r <= 0.1 else 'missed'})")
        label = results["ops"][op]["op"]["label"]
        out.append(f"- smpc/CrypTen time ratio <= 0.1 for {label}: " + (", ".join(parts) or "not measured"))
    rec = _rec(results, "lending", "smpc") if "lending" in results["ops"] else None
    if rec and rec["status"] == "ok":
        peak = max(rec["peak_rss_per_party"])
        out.append(f"- peak RSS <= 1 GB per party for lending: {_b(peak)} ({'met' if peak <= 1e9 else 'missed'})")
    rec = _rec(results, "multi_lending", "smpc") if "multi_lending" in results["ops"] else None
    if rec and rec["status"] == "ok":
        rows = results.get("lending_rows") or results["ops"]["multi_lending"]["op"]["elements"]
        t, peak = rec["median_s"], max(rec["peak_rss_per_party"])
        if rows == 100_000:
            out.append(f"- multi_lending, 3 banks x 1e5 rows <= 10 s: {_t(t)} ({'met' if t <= 10 else 'missed'})")
        elif rows == 1_000_000:
            out.append(f"- multi_lending, 3 banks x 1e6 rows <= 2 min: {_t(t)} ({'met' if t <= 120 else 'missed'}); "
                       f"<= 2 GB per party: {_b(peak)} ({'met' if peak <= 2e9 else 'missed'})")
        else:
            out.append(f"- (multi_lending's aims are stated for 1e5 and 1e6 rows per bank; this run used {rows:,})")
    rec = _rec(results, "lt", "smpc") if "lt" in results["ops"] else None
    if results["mode"] == "wan" and rec and rec["status"] == "ok" and rec.get("rounds_per_party"):
        rounds = max(rec["rounds_per_party"])
        rtt = results["wan"]["rtt_ms"]
        out.append(f"- x<y under {rtt:g} ms RTT: {rounds} rounds ({'met' if rounds <= 12 else 'missed'}: <= 12), "
                   f"{_t(rec['median_s'])} against a latency floor of {rounds} × RTT/2 = {_t(rounds * rtt / 2000)}")
    if results["n"] != 1_000_000:
        out.append(f"- (the targets are stated for N = 1e6; this run used N = {results['n']:,})")
    return out


def chart(results: dict, path: Path) -> Path | None:
    """A grouped bar chart of the median times (log scale); None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    systems = results["systems"]
    ops = _ops(results)
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(ops) + 2), 4.8))
    colors = {"smpc": "#1f77b4", "crypten-tfp": "#ff7f0e", "crypten-ttp": "#d62728"}
    for i, s in enumerate(systems):
        xs, ys = [], []
        for j, op in enumerate(ops):
            rec = _rec(results, op, s)
            x = j + (i - (len(systems) - 1) / 2) * width
            if rec and rec["status"] == "ok" and rec.get("median_s"):
                xs.append(x)
                ys.append(rec["median_s"])
            else:
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90,
                        transform=ax.get_xaxis_transform())
        ax.bar(xs, ys, width=width, label=results["system_labels"][s], color=colors.get(s))
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)))
    ax.set_xticklabels([results["ops"][op]["op"]["label"].replace(", reveal", "") for op in ops], rotation=25,
                       ha="right", fontsize=8)
    ax.set_ylabel("median seconds (max over parties), log scale")
    ax.set_title(f"smpc vs CrypTen 0.4.1, N = {results['n']:,}, {results['mode'].upper()}"
                 + (f" ({results['wan']['rtt_ms']:g} ms RTT)" if results.get("wan") else ""), fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_json(results: dict, path: Path) -> Path:
    """Write the results (also the partial ones after each op: a failed run keeps them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def write(results: dict, out_dir: Path, stem: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": save_json(results, out_dir / f"{stem}.json"), "markdown": out_dir / f"{stem}.md"}
    paths["markdown"].write_text(markdown(results))
    png = chart(results, out_dir / f"{stem}.png")
    if png is not None:
        paths["png"] = png
    return paths


def load_baseline(path: str) -> dict[str, float]:
    """op -> smpc median seconds from an earlier (LAN) JSON, for the WAN growth columns."""
    data = json.loads(Path(path).read_text())
    out = {}
    for op, o in data["ops"].items():
        rec = o["systems"].get("smpc")
        if rec and rec.get("status") == "ok" and rec.get("median_s") is not None:
            out[op] = rec["median_s"]
    return out
