"""Three banks, three party services, real gRPC with mutual TLS: the consortium end to end.

What it does (everything in a temporary folder, on 127.0.0.1):
1. makes a development CA and a certificate per bank (what `smpc certs init` does);
2. splits two public credit data sets between bank_a, bank_b and bank_c, and writes each
   bank's party configuration (peers, TLS, data sources, policy with min cell size 10);
3. starts the three party services as subprocesses (`smpc party serve --config ...`) and waits
   for their standard gRPC health checks;
4. submits the demo analyses through the job service -- each to a different bank's service,
   as a different bank -- showing every job's progress, and prints each secure result beside
   the plaintext answer computed with pandas on the pooled data;
5. submits a job bank_c's policy refuses (a column it does not allow) to show the refusal;
6. shuts the services down with SIGTERM and verifies every bank's hash-chained audit log.

Run: make demo   (or: .venv/bin/python examples/consortium_demo.py [--keep DIR])
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pandas as pd

from smpc import PolicyError, analyses
from smpc.service.audit import verify
from smpc.service.client import JobClient
from smpc.service.pki import init_certs
from smpc.service.states import STATE_NAMES

DATA = Path(__file__).resolve().parent / "data"
BANKS = ["bank_a", "bank_b", "bank_c"]
MIN_CELL = 10
PURPOSES = ["business", "car (new)", "car (used)", "domestic appliances", "education", "furniture/equipment", "others",
            "radio/television", "repairs", "retraining"]
# what each bank declares about its columns: the analyses' bounds, decimals and group keys
# come from here (every bank's own), never from whoever submits a job
LOANS = {"creditability": {"type": "str", "categories": ["bad", "good"]},
         "credit_amount": {"type": "int", "bound": 100_000},
         "duration_in_month": {"type": "int", "bound": 1000},
         "age_in_years": {"type": "int", "bound": 200},
         "purpose": {"type": "str", "categories": PURPOSES}}
CARDS = {"EDUCATION": {"type": "int", "categories": list(range(7))},
         "LIMIT_BAL": {"type": "float", "bound": 1e7, "decimals": 0},
         "BILL_AMT1": {"type": "float", "bound": 1e7, "decimals": 2},
         "default": {"type": "int", "bound": 1}}

# (title, analysis, source, params): run in this order, each through another bank's service
JOBS = [
    ("Joint default rate and credit amount", "default_rate_overall", "loans",
     {"label": "creditability", "positive": "bad", "amount": "credit_amount"}),
    ("Default rate by loan purpose", "default_rate", "loans",
     {"label": "creditability", "positive": "bad", "by": "purpose"}),
    ("Credit amount and duration", "describe", "loans", {"columns": "credit_amount,duration_in_month"}),
    ("Card defaults and credit limits", "default_rate_overall", "cards",
     {"label": "default", "amount": "LIMIT_BAL"}),
    ("Statement balance bands", "histogram", "cards",
     {"column": "BILL_AMT1", "edges": "-200000,0,10000,50000,100000,250000,700000"}),
]
ALLOWED_COLUMNS = {
    "default_rate_overall": ["creditability", "credit_amount", "age_in_years", "default", "LIMIT_BAL"],
    "default_rate": ["creditability", "purpose", "default", "EDUCATION"],
    "describe": ["credit_amount", "duration_in_month", "LIMIT_BAL", "BILL_AMT1"],
    "histogram": ["BILL_AMT1", "credit_amount"],
}


def split(frame: pd.DataFrame, columns) -> dict[str, pd.DataFrame]:
    return {b: frame.iloc[i::3][list(columns)].reset_index(drop=True) for i, b in enumerate(BANKS)}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


def write_secret(path: Path) -> None:
    """32 random bytes in hex, readable by their owner only (mode 0600): the consortium's join
    salt (agreed at set-up, the same at every bank) or a bank's own job store key. A file that
    the set-up already wrote is kept (a store key must stay with its database)."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def write_config(root: Path, bank: str, ports: dict[str, int], analyses_allowed: list[str]) -> Path:
    peers = "".join(
        f'\n[peers.{p}]\naddress = "127.0.0.1:{ports[p]}"\nidentity = "{p}"\n' for p in BANKS if p != bank
    )
    # bank_c keeps age out of every analysis
    columns = "\n".join(
        f"{a} = {toml([col for col in c if not (bank == 'bank_c' and col == 'age_in_years')])}"
        for a, c in ALLOWED_COLUMNS.items() if a in analyses_allowed
    )
    # two data sources: each analysis names the ones it may read
    sources = "\n".join(f"{a} = {toml(sorted({src for _, name, src, _ in JOBS if name == a}))}"
                        for a in analyses_allowed)
    text = f"""# {bank}'s party service (written by examples/consortium_demo.py)
[party]
name = "{bank}"
listen = "127.0.0.1:{ports[bank]}"

[tls]
ca = "certs/ca.pem"
cert = "certs/{bank}.pem"
key = "certs/{bank}.key"

[compute]
ranks = {toml(BANKS)}
{peers}
[data.loans]
path = "data/{bank}_loans.csv"
columns = {toml(LOANS)}

[data.cards]
path = "data/{bank}_cards.csv"
columns = {toml(CARDS)}

[policy]
allowed_analyses = {toml(analyses_allowed)}
min_cell_size = {MIN_CELL}
allowed_recipients = {toml(BANKS)}
max_rows = 1000000

[policy.allowed_columns]
{columns}

[policy.allowed_sources]
{sources}

[join]
salt_file = "certs/join_salt"

[audit]
path = "audit/{bank}.jsonl"

[store]
key_file = "certs/{bank}.store_key"

[timeouts]
step = 60
connect = 10
job = 600
"""
    path = root / f"{bank}.toml"
    path.write_text(text)
    return path


def wait_healthy(bank: str, proc: subprocess.Popen, client: JobClient, log: Path, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{bank}'s service exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if client.health(timeout=2.0) == "SERVING":
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{bank}'s service did not become healthy:\n{log.read_text()[-3000:]}")
        try:  # returns as soon as the port accepts connections
            grpc.channel_ready_future(client.channel).result(timeout=1.0)
        except grpc.FutureTimeoutError:
            pass


class Progress:
    """One line per job: redrawn in place on a terminal, one line per stage otherwise."""

    def __init__(self, title: str):
        self.title = title
        self.tty = sys.stdout.isatty()
        self.last_stage = None

    def __call__(self, event) -> None:
        width = 30
        filled = int(round(event.progress * width))
        line = (f"  [{'#' * filled}{'.' * (width - filled)}] {event.progress:6.1%} "
                f"{STATE_NAMES[event.state]:<9} {event.stage[:48]}")
        if self.tty:
            print("\r" + line.ljust(100), end="", flush=True)
        elif event.stage != self.last_stage:
            print(line, flush=True)
        self.last_stage = event.stage

    def done(self) -> None:
        if self.tty:
            print()


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _fmt(v) -> str:
    return f"{v:.9g}" if isinstance(v, float) else str(v)


def show(secure: dict, plain: dict) -> bool:
    s, p = flatten(secure), flatten(plain)
    keys = list(dict.fromkeys([*s, *p]))
    width = min(46, max(len(k) for k in keys))
    print(f"  {'':<{width}}  {'secure (3 services)':>22}  {'plaintext (pandas)':>22}")
    ok = True
    for k in keys:
        match = same(s.get(k), p.get(k))
        ok &= match
        print(f"  {k[:width]:<{width}}  {_fmt(s.get(k)):>22}  {_fmt(p.get(k)):>22}{'' if match else '   MISMATCH'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args.keep)
    with tempfile.TemporaryDirectory(prefix="smpc-demo-") as tmp:
        return run(Path(tmp))


def run(root: Path) -> int:
    t_start = time.perf_counter()
    init_certs(BANKS, root / "certs")
    write_secret(root / "certs" / "join_salt")
    for bank in BANKS:  # each bank's own key for its job store
        write_secret(root / "certs" / f"{bank}.store_key")
    print(f"development CA and certificates for {', '.join(BANKS)} in {root / 'certs'}")
    loans = split(pd.read_csv(DATA / "german_credit.csv"), LOANS)
    cards = split(pd.read_csv(DATA / "taiwan_default_sample.csv"), CARDS)
    (root / "data").mkdir(exist_ok=True)
    for bank in BANKS:
        loans[bank].to_csv(root / "data" / f"{bank}_loans.csv", index=False)
        cards[bank].to_csv(root / "data" / f"{bank}_cards.csv", index=False)
    print("data: German credit (1,000 loans) and Taiwan card sample (6,000 cards), every third row per bank")
    jobs = [j for j in JOBS if j[1] in analyses.names()]
    allowed = list(dict.fromkeys(a for _, a, _, _ in jobs))
    ports = dict(zip(BANKS, free_ports(3), strict=True))
    configs = {b: write_config(root, b, ports, allowed) for b in BANKS}

    procs: dict[str, subprocess.Popen] = {}
    certs = root / "certs"

    def client(bank: str, identity: str) -> JobClient:
        return JobClient(f"127.0.0.1:{ports[bank]}", ca=certs / "ca.pem", cert=certs / f"{identity}.pem",
                         key=certs / f"{identity}.key", server_identity=bank)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ok = True
    try:
        t0 = time.perf_counter()
        for bank in BANKS:
            log = open(root / f"{bank}.log", "w")  # noqa: SIM115 - the service writes it
            procs[bank] = subprocess.Popen(
                [sys.executable, "-m", "smpc.cli", "party", "serve", "--config", str(configs[bank])],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
            )
            log.close()
            print(f"started {bank}'s party service (pid {procs[bank].pid}) on 127.0.0.1:{ports[bank]}")
        for bank in BANKS:
            with client(bank, bank) as c:
                wait_healthy(bank, procs[bank], c, root / f"{bank}.log")
        print(f"all three services healthy (mutual TLS) after {time.perf_counter() - t0:.1f} s\n")

        tables = {"loans": loans, "cards": cards}
        for i, (title, name, source, params) in enumerate(jobs):
            entry, requester = BANKS[i % 3], BANKS[(i + 1) % 3]
            print(f"{i + 1}. {title}: {name} on '{source}', submitted to {entry} by {requester}")
            progress = Progress(title)
            t = time.perf_counter()
            with client(entry, requester) as c:
                # results open only to the recipients' parties: the entry party hands this one out
                job_id = c.submit(name, params, source=source, recipients=[entry])
                secure = c.wait(job_id, on_event=progress)
                status = c.get(job_id)
            progress.done()
            plain = analyses.get(name).run_plaintext(tables[source], **params, min_cell_size=MIN_CELL)
            ok &= show(secure, plain)
            print(f"  job {job_id}: {time.perf_counter() - t:.2f} s, {entry} sent {status.bytes_sent:,} bytes "
                  f"in {status.rounds} rounds\n")

        print(f"{len(jobs) + 1}. A job bank_c's policy refuses (age_in_years is not allowed there):")
        with client("bank_a", "bank_b") as c:
            try:
                c.submit("default_rate_overall", {"label": "creditability", "positive": "bad",
                                                  "amount": "age_in_years"}, source="loans")
                print("  NOT refused?!")
                ok = False
            except PolicyError as exc:
                print(f"  refused: {exc}\n")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for bank, proc in procs.items():
            try:
                codes[bank] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[bank] = proc.wait()
        if codes:
            clean = all(c == 0 for c in codes.values())
            ok &= clean
            print("services stopped " + ("cleanly" if clean else f"with exit codes {codes}"))
    for bank in BANKS:
        result = verify(root / "audit" / f"{bank}.jsonl")
        ok &= result.ok
        print(f"audit log of {bank}: {result}")
    print(f"\n{'all results equal the plaintext answers' if ok else 'SOMETHING DIFFERED'}; "
          f"{time.perf_counter() - t_start:.1f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
