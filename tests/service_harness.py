"""Test harness for the party services: real `smpc party serve` processes on 127.0.0.1.

A ``Cluster`` makes a development PKI with ``smpc certs init`` (the CLI, in a subprocess),
splits example data between the banks, writes one TOML config per party with free ports,
starts the three services as subprocesses and waits for them with the standard health check
(polled against a deadline: no sleeps for timing). Logs go to files next to the configs and
are shown when a process dies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BANKS = ["bank_a", "bank_b", "bank_c"]
GERMAN = ROOT / "examples" / "data" / "german_credit.csv"
# what each bank declares about its loan book's columns: the analyses' bounds, decimals and
# group keys come from here, never from a requester
COLUMNS = {"creditability": {"type": "str", "categories": ["bad", "good"]},
           "credit_amount": {"type": "int", "bound": 100_000, "total_bound": 10_000_000},
           "duration_in_month": {"type": "int", "bound": 1000}, "age_in_years": {"type": "int", "bound": 200},
           "purpose": {"type": "str", "categories": ["business", "car (new)", "car (used)", "domestic appliances",
                                                    "education", "furniture/equipment", "others", "radio/television",
                                                    "repairs", "retraining"]}}
JOIN_SALT = "test consortium join salt 5d1e0b7a"
# the service's own message, and gRPC's (whose add_secure_port raises rather than returning 0)
PORT_TAKEN = ("cannot listen", "Address already in use")
LOAN_PARAMS = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, chosen below the kernel's ephemeral range.

    A port the kernel handed out for bind(0) lies in the ephemeral range, which is also where
    every outgoing connection's source port comes from: between this choice and the service's
    bind, any of the many gRPC connections the tests open could take it. Below that range only
    a process that names the port itself can, so the choice holds. (``Cluster.start`` still
    retries on fresh ports if one was taken all the same.)"""
    low, _ = _ephemeral_range()
    candidates = list(range(max(1024, low - 12000), low))
    random.SystemRandom().shuffle(candidates)
    chosen = []
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == n:
            return chosen
    raise AssertionError(f"no {n} free ports below the ephemeral range ({low})")


def smpc_cli(*args: str, check: bool = True, env: dict | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m smpc.cli ARGS`` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "smpc.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"smpc {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def bank_tables(path: Path = GERMAN, banks=BANKS) -> dict[str, pd.DataFrame]:
    """Every n-th loan to each bank (the same split the demo uses)."""
    frame = pd.read_csv(path)
    return {b: frame.iloc[i::len(banks)][list(COLUMNS)].reset_index(drop=True) for i, b in enumerate(banks)}


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


class Cluster:
    """Three party services in subprocesses, with certificates, data and configs in ``root``."""

    def __init__(self, root: Path, *, step_timeout: float = 20.0, policies: dict | None = None,
                 extra_sources: dict | None = None, analysis_modules: tuple[str, ...] = ("service_test_analyses",),
                 extra_allowed: tuple[str, ...] = ("test_endless_rounds",), certs_by_cli: bool = True,
                 join_salt: str = JOIN_SALT, crl: bool = False, pins: dict | None = None,
                 limits: dict | None = None, bank_limits: dict | None = None, anchor_interval_s: float | None = None,
                 compute: dict | None = None):
        """``crl``: every party checks the CA's revocation list ``certs/ca.crl``. ``pins``:
        ``{bank: {peer: "sha256:..."}}``, written as ``[peers.PEER] fingerprint``. ``compute``:
        more ``[compute]`` keys of every party (``workers``, ``engine``, ...)."""
        self.root = Path(root)
        self.compute = dict(compute or {})
        self.anchor_interval_s = anchor_interval_s
        self.crl = crl
        self.pins = pins or {}
        self.root.mkdir(parents=True, exist_ok=True)
        self.certs = self.root / "certs"
        if certs_by_cli:  # the real command, as an operator runs it
            smpc_cli("certs", "init", "--parties", ",".join(BANKS), "--clients", "analyst,outsider",
                     "--out", str(self.certs))
        else:
            from smpc.service.pki import init_certs

            init_certs(BANKS, self.certs, clients=["analyst", "outsider"])
        self.join_salt = self.certs / "join_salt"  # the consortium's secret, agreed at set-up
        self.write_join_salt(self.join_salt, join_salt)
        for bank in BANKS:  # each party's own key for its job store
            self.write_store_key(self.store_key_path(bank))
        self.ports = dict(zip(BANKS, free_ports(len(BANKS)), strict=True))
        self.tables = bank_tables()
        self.procs: dict[str, subprocess.Popen] = {}
        self.configs: dict[str, Path] = {}
        # the [limits] table of every party, with bank_limits[bank]'s keys over it
        self.limits = {b: {**(limits or {}), **(bank_limits or {}).get(b, {})} for b in BANKS}
        # every config names every party's port: kept so that new ports can be written to all
        self._config_inputs: dict[str, tuple] = {}
        policies = policies or {}
        for bank in BANKS:
            data = self.root / "data" / f"{bank}_loans.csv"
            data.parent.mkdir(exist_ok=True)
            self.tables[bank].to_csv(data, index=False)
            policy = {
                "allowed_analyses": ["default_rate_overall", *extra_allowed],
                "min_cell_size": 10,
                "allowed_recipients": [*BANKS, "analyst"],
                "max_rows": 1_000_000,
                "allowed_columns": {"default_rate_overall": list(COLUMNS)},
            }
            policy.update(policies.get(bank, {}))
            sources = ["loans", *(extra_sources or {}).get(bank, {})]
            if len(sources) > 1 and "allowed_sources" not in policy:  # unless a test says: any source
                policy["allowed_sources"] = {a: sources for a in policy["allowed_analyses"]}
            self._config_inputs[bank] = (policy, (extra_sources or {}).get(bank, {}), step_timeout, analysis_modules)
        self._write_configs()

    def _write_configs(self) -> None:
        for bank in BANKS:
            self.configs[bank] = self._write_config(bank, *self._config_inputs[bank])

    def _write_config(self, bank, policy, extra_sources, step_timeout, modules) -> Path:
        lines = [
            "[party]", f'name = "{bank}"', f'listen = "127.0.0.1:{self.ports[bank]}"', "",
            "[tls]", 'ca = "certs/ca.pem"', f'cert = "certs/{bank}.pem"', f'key = "certs/{bank}.key"',
            *(['crl = "certs/ca.crl"'] if self.crl else []), "",
            "[compute]", f"ranks = {_toml_value(BANKS)}",
            *[f"{k} = {_toml_value(v)}" for k, v in self.compute.items()], "",
        ]
        for other in BANKS:
            if other != bank:
                pin = self.pins.get(bank, {}).get(other)
                lines += [f"[peers.{other}]", f'address = "127.0.0.1:{self.ports[other]}"', f'identity = "{other}"',
                          *([f'fingerprint = "{pin}"'] if pin else []), ""]
        lines += ["[data.loans]", f'path = "data/{bank}_loans.csv"', f"columns = {_toml_value(COLUMNS)}", ""]
        for name, (path, columns, *dp) in extra_sources.items():  # dp: the source's [data.NAME.dp], if any
            lines += [f"[data.{name}]", f"path = {_toml_value(str(path))}", f"columns = {_toml_value(columns)}",
                      *([f"dp = {_toml_value(dp[0])}"] if dp else []), ""]
        policy = dict(policy)  # kept for a rewrite: not to be changed here
        allowed_columns = policy.pop("allowed_columns")
        lines += ["[policy]"] + [f"{k} = {_toml_value(v)}" for k, v in policy.items()] + [""]
        lines += ["[policy.allowed_columns]"] + [f"{k} = {_toml_value(v)}" for k, v in allowed_columns.items()] + [""]
        lines += ["[join]", f"salt_file = {_toml_value(str(self.join_salt))}", ""]
        lines += ["[audit]", f'path = "audit/{bank}.jsonl"',
                  *([f"anchor_interval_s = {self.anchor_interval_s}"] if self.anchor_interval_s else []), ""]
        lines += ["[store]", f'key_file = "certs/{bank}.store_key"', ""]
        lines += ["[timeouts]", f"step = {step_timeout}", "connect = 10", "job = 600", ""]
        if self.limits[bank]:
            lines += ["[limits]"] + [f"{k} = {_toml_value(v)}" for k, v in self.limits[bank].items()] + [""]
        if modules:
            lines += ["[analyses]", f"modules = {_toml_value(list(modules))}", ""]
        path = self.root / f"{bank}.toml"
        path.write_text("\n".join(lines))
        return path

    @staticmethod
    def write_join_salt(path: Path, salt: str) -> None:
        """A join salt file as a party reads it: its owner's only (mode 0600)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(salt + "\n")
        os.chmod(path, 0o600)

    def store_key_path(self, bank: str) -> Path:
        return self.certs / f"{bank}.store_key"

    def store_path(self, bank: str) -> Path:
        """The party's job store (its default place: beside the audit log)."""
        return self.root / "audit" / f"{bank}.sqlite"

    @staticmethod
    def write_store_key(path: Path) -> None:
        """A job store key as a party reads it: 32 random bytes in hex, its owner's only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(path, 0o600)

    # ----- processes --------------------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def log_path(self, bank: str) -> Path:
        return self.root / f"{bank}.log"

    def start(self, *banks: str, attempts: int = 3) -> None:
        """Start ``banks`` (default: all) and wait until they serve. The full start retries on
        fresh ports when a service cannot listen: ``free_ports`` lets its ports go, and another
        process may take one before the service binds it. A single bank restarts on its port."""
        if banks or self.procs:
            self._start(banks or BANKS)
            return
        for attempt in range(1, attempts + 1):
            logs_at = {bank: self._log_size(bank) for bank in BANKS}
            try:
                self._start(BANKS)
                return
            except AssertionError:
                taken = any(mark in self.log(bank, since=logs_at[bank]) for bank in BANKS for mark in PORT_TAKEN)
                if not taken or attempt == attempts:
                    raise
            self.ports = dict(zip(BANKS, free_ports(len(BANKS)), strict=True))
            self._write_configs()

    def _start(self, banks) -> None:
        """Start ``banks``; on any failure kill what was started here (a fixture that raises
        before its ``yield`` gets no teardown), then re-raise."""
        started = []
        try:
            for bank in banks:
                with open(self.log_path(bank), "a") as log:  # the child keeps its own descriptor
                    self.procs[bank] = subprocess.Popen(
                        [sys.executable, "-m", "smpc.cli", "party", "serve", "--config", str(self.configs[bank])],
                        stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.root,
                    )
                started.append(bank)
            for bank in banks:
                self.wait_healthy(bank)
        except BaseException:
            for bank in started:
                self.kill(bank)
            raise

    def wait_healthy(self, bank: str, deadline_s: float = 120.0) -> None:
        deadline = time.monotonic() + deadline_s
        with self.client(bank) as client:
            while True:
                proc = self.procs.get(bank)
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"{bank} exited with {proc.returncode}:\n{self.log(bank)}")
                try:
                    if client.health(timeout=2.0) == "SERVING":
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{bank} not healthy within {deadline_s} s:\n{self.log(bank)}")
                try:  # returns as soon as the server accepts connections (bounded, not a sleep)
                    grpc.channel_ready_future(client.channel).result(timeout=1.0)
                except grpc.FutureTimeoutError:
                    pass

    def log(self, bank: str, since: int = 0) -> str:
        """The end of ``bank``'s log (from byte ``since`` on)."""
        path = self.log_path(bank)
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")[-5000:]

    def _log_size(self, bank: str) -> int:
        path = self.log_path(bank)
        return path.stat().st_size if path.exists() else 0

    def kill(self, bank: str) -> None:
        proc = self.procs.pop(bank)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, bank: str, timeout: float = 30) -> int:
        proc = self.procs.pop(bank)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # the service dumps every thread's stack to its log
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
            proc.wait()
            raise AssertionError(f"{bank} did not stop on SIGTERM:\n{self.log(bank)}") from None

    def stop_all(self) -> dict[str, int]:
        """Stop every bank, also when stopping one fails; then raise the first failure."""
        codes = {}
        first_error = None
        for bank in list(self.procs):
            self.procs[bank].send_signal(signal.SIGTERM)
        for bank in list(self.procs):
            try:
                codes[bank] = self.stop(bank)
            except Exception as exc:  # noqa: BLE001 - raised below, once the others are stopped
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return codes

    # ----- clients ----------------------------------------------------------------------
    def address(self, bank: str) -> str:
        return f"127.0.0.1:{self.ports[bank]}"

    def cert_args(self, identity: str) -> dict:
        return {"ca": self.certs / "ca.pem", "cert": self.certs / f"{identity}.pem",
                "key": self.certs / f"{identity}.key"}

    def client(self, bank: str, identity: str = "bank_a", **kw):
        from smpc.service.client import JobClient

        return JobClient(self.address(bank), server_identity=bank, **self.cert_args(identity), **kw)

    def audit(self, bank: str) -> list[dict]:
        """``bank``'s audit records so far. The service may be appending one as this reads: a
        record is complete only with its newline, so a partial last line is left for the next
        read (tests poll their logs while parties write heads after a job)."""
        path = self.root / "audit" / f"{bank}.jsonl"
        if not path.exists():
            return []
        data = path.read_bytes()
        return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]

    def records(self, bank: str, job_id: str) -> list[dict]:
        """``bank``'s audit records of one job."""
        return [r for r in self.audit(bank) if r.get("job_id") == job_id]

    def audit_path(self, bank: str) -> Path:
        return self.root / "audit" / f"{bank}.jsonl"


def wait_for(predicate, deadline_s: float = 60.0, what: str = "condition", poll=None):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes.

    ``poll`` is a callable that blocks for a short while (e.g. a gRPC call); by default the
    predicate itself is expected to block (it usually is a remote call)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if poll is not None:
            poll()
        else:
            time.sleep(0.05)  # polling interval only; nothing asserts on time
