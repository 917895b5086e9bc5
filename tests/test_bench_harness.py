"""The side-by-side harness (benchmarks/smpc_compare, ``smpc bench``) cannot rot.

Quick runs through the real command: three smpc party processes over gRPC with mutual TLS,
CrypTen TFP when it is installed, the WAN delay relay, the reports. Nothing here asserts a
time: the checks are on what the report says (every op ran, results exact where they must
be, bytes and rounds counted, the mode stated) and on clean-up (no process left behind, also
after the run is killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # benchmarks/smpc_compare is imported as ``smpc_compare`` (never installed)

from smpc_compare import crypten_compat, relay  # noqa: E402

pytestmark = pytest.mark.skipif(not (BENCH / "smpc_compare" / "harness.py").is_file(),
                                reason="no benchmarks/smpc_compare")


def _bench(args: list[str], token: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SMPC_BENCH_TEST_TOKEN=token)
    return subprocess.run([sys.executable, "-m", "smpc.cli", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _processes_with(token: str) -> list[int]:
    """PIDs of live processes whose environment carries ``token`` (every party inherits it)."""
    found = []
    needle = f"SMPC_BENCH_TEST_TOKEN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _no_leftovers(token: str) -> None:
    # the parties end when the driver's pipe closes (or by PDEATHSIG); give them a moment
    deadline = time.monotonic() + 20
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(token) == []


def _lines_of(stream) -> queue.Queue:
    """The lines of ``stream``, read by a thread (then None at its end), so a reader can wait
    with a deadline: iterating over a pipe blocks until the next line, however long."""
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _crypten_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("crypten") is not None


def test_quick_mode_smpc_over_grpc(tmp_path):
    """`smpc bench --n 1e4 --no-crypten`: every op but the 1000x1000 matmul, one run each."""
    token = uuid.uuid4().hex
    ops = "share,mul,lt,sum,div,matmul256,lending"
    proc = _bench(["--n", "1e4", "--no-crypten", "--reps", "1", "--warmup", "0", "--ops", ops,
                   "--out", str(tmp_path), "--quiet"], token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "compare.json").read_text())
    assert data["mode"] == "lan" and data["n"] == 10_000 and data["systems"] == ["smpc"]
    assert list(data["ops"]) == ops.split(",")
    recs = {op: o["systems"]["smpc"] for op, o in data["ops"].items()}
    for op, rec in recs.items():
        if op == "div" and rec["status"] == "unavailable":  # secret division may not be wired in yet
            continue
        assert rec["status"] == "ok", (op, rec.get("message"))
        assert len(rec["seconds"]) == 1 and rec["median_s"] > 0
        assert min(rec["peak_rss_per_party"]) > 0
        assert len(rec["bytes_sent_per_party"]) == 3 and max(rec["bytes_sent_per_party"]) > 0
    # exact where it must be, within the fixed-point bound elsewhere
    assert recs["lt"]["errors"]["wrong"] == 0
    assert recs["lending"]["errors"]["max_abs_err"] == 0
    assert recs["mul"]["errors"]["max_abs_err"] < 1e-2
    assert recs["sum"]["errors"]["max_rel_err"] < 1e-6
    if recs["div"]["status"] == "ok":
        assert recs["div"]["errors"]["max_rel_err"] < 1e-4
    assert max(recs["lt"]["rounds_per_party"]) <= 12
    assert recs["share"]["errors"] == {}
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith("Mode: **LAN**") and "| x*y, reveal |" in md and "Command: `smpc bench --n 10000" in md
    assert proc.stdout.strip() == md.strip()
    png = tmp_path / "compare.png"
    if png.exists():  # matplotlib is a dev extra
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _no_leftovers(token)


def test_quick_mode_join_ops_smpc_only(tmp_path):
    """`python benchmarks/smpc_compare --n 1e4 --ops shuffle,sort,multi_lending`: the private-join
    ops run over gRPC and are exact (the shuffled rows are the input rows, the
    sorted rows the input sorted by key, multi_lending equals its plaintext twin, every
    bank's flagged ids included); CrypTen, named or not, gets "n/a" columns (its parties are
    not even started)."""
    token = uuid.uuid4().hex
    ops = "shuffle,sort,multi_lending"
    systems = "smpc,crypten-tfp" if _crypten_installed() else "smpc"
    env = dict(os.environ, SMPC_BENCH_TEST_TOKEN=token)
    proc = subprocess.run([sys.executable, str(BENCH / "smpc_compare"), "--n", "1e4", "--systems", systems,
                           "--reps", "1", "--warmup", "0", "--ops", ops, "--out", str(tmp_path), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "compare.json").read_text())
    assert list(data["ops"]) == ops.split(",") and data["lending_rows"] == 10_000
    for op, o in data["ops"].items():
        rec = o["systems"]["smpc"]
        assert rec["status"] == "ok", (op, rec.get("message"))
        assert len(rec["seconds"]) == 1 and rec["median_s"] > 0
        assert min(rec["peak_rss_per_party"]) > 0
        assert min(rec["bytes_sent_per_party"]) > 0 and max(rec["rounds_per_party"]) > 0
        assert rec["errors"]["max_abs_err"] == 0 and rec["errors"]["wrong"] == 0, (op, rec["errors"])
        if "crypten-tfp" in systems:
            assert o["systems"]["crypten-tfp"]["status"] == "n/a"
    assert data["ops"]["shuffle"]["systems"]["smpc"]["errors"]["unmoved_rows"] < 100  # ~1: it did permute
    assert max(data["ops"]["shuffle"]["systems"]["smpc"]["rounds_per_party"]) == 3
    ml = data["ops"]["multi_lending"]
    assert ml["systems"]["smpc"]["errors"]["flagged_count"] == ml["reference"]["flagged_count"] > 0
    assert sum(ml["reference"]["rows_per_bank"]) > 25_000  # three banks of ~1e4 rows
    md = (tmp_path / "compare.md").read_text()
    assert "| multi_lending: 3 banks x 10,000 rows |" in md and "multi_lending: 10,000 rows per bank" in md
    if "crypten-tfp" in systems:
        assert "| n/a |" in md
    assert proc.stdout.strip() == md.strip()
    _no_leftovers(token)


def test_join_ops_options():
    """The private-join ops are selectable and opt-in; --lending-rows sets multi_lending's size."""
    from smpc_compare import cli as harness_cli
    from smpc_compare import workload

    args = harness_cli.build_parser().parse_args(["--ops", "shuffle,sort,multi_lending", "--lending-rows", "1e6"])
    assert args.ops == ["shuffle", "sort", "multi_lending"] and args.lending_rows == 10**6
    assert "--lending-rows 1000000" in harness_cli.command_line(args)
    assert not set(workload.SMPC_ONLY) & set(harness_cli.build_parser().parse_args([]).ops)
    assert workload.ops_for(10**6)["multi_lending"].size == 10**5
    assert workload.ops_for(10**4)["multi_lending"].size == 10**4
    assert workload.ops_for(10**6, 10**6)["multi_lending"].size == 10**6


def test_wan_mode_relays_every_system_and_a_killed_run_leaves_no_process(tmp_path):
    """`--wan`: every party-to-party connection crosses the relay (smpc's gRPC streams and,
    when CrypTen is installed, its gloo pairs), and the report says which mode ran. The run
    is then killed (SIGTERM, twice) in its third op: what was measured is kept, and the parties and
    the relay end with the driver."""
    token = uuid.uuid4().hex
    systems = "smpc,crypten-tfp" if _crypten_installed() else "smpc"
    env = dict(os.environ, SMPC_BENCH_TEST_TOKEN=token)
    # --timeout: a stalled op ends itself well within this test's deadline
    proc = subprocess.Popen([sys.executable, "-m", "smpc.cli", "bench", "--n", "1e3", "--systems", systems,
                             "--ops", "lt,lending,matmul1000", "--reps", "1", "--warmup", "0", "--wan", "4,200",
                             "--timeout", "120", "--out", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    try:
        lines = _lines_of(proc.stderr)
        deadline = time.monotonic() + 240
        while True:  # until two ops are done and the third has begun
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no [matmul1000] line within 240 s:\n" + "".join(log))
            if line is None:
                pytest.fail(f"the bench exited ({proc.poll()}) before [matmul1000]:\n" + "".join(log))
            log.append(line)
            if line.startswith("[matmul1000]"):
                break
        assert len(_processes_with(token)) >= 5, "".join(log)  # driver, relay, three parties (at least)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # a repeat must not cut the cleanup short
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode != 0
    _no_leftovers(token)
    data = json.loads((tmp_path / "compare-wan.json").read_text())  # saved after each op
    assert data["mode"] == "wan" and data["wan"] == {"rtt_ms": 4.0, "rate_mbit": 200.0}
    assert "delay relay" in data["mode_description"]
    assert list(data["ops"]) == ["lt", "lending"]
    for op in ("lt", "lending"):
        for system in systems.split(","):
            rec = data["ops"][op]["systems"][system]
            assert rec["status"] == "ok", (op, system, rec.get("message"))
            assert rec["wire_bytes_median"] > 0  # its traffic went through the relay
            assert rec["errors"]["wrong"] == 0
            assert max(rec["rounds_per_party"]) > 0


# ----- pieces --------------------------------------------------------------------------
def test_cli_help_and_clear_errors(tmp_path):
    """`smpc bench` is a launcher: the harness's parser (in benchmarks/) reads the options, and a
    folder without the harness (an installed wheel) gets one clear error naming what is missing."""
    from smpc_compare import cli as harness_cli

    from smpc.bench_cli import find_harness, harness_command, split_repo
    from smpc.cli import build_parser
    from smpc.errors import SmpcError

    args = build_parser().parse_args(["bench", "--n", "1e4", "--ops", "mul,lt", "--wan", "20,100"])
    assert args.harness_args == ["--n", "1e4", "--ops", "mul,lt", "--wan", "20,100"]
    options = harness_cli.build_parser("smpc bench").parse_args(args.harness_args)
    assert options.n == 10_000 and options.ops == ["mul", "lt"] and options.wan == "20,100"
    assert harness_cli.command_line(options, "smpc bench") == "smpc bench --n 10000 --ops mul,lt --wan 20,100"
    with pytest.raises(SystemExit):
        harness_cli.build_parser().parse_args(["--ops", "mul,nope"])
    assert find_harness(str(ROOT)) == BENCH
    with pytest.raises(SmpcError, match="source checkout"):
        find_harness(str(tmp_path))
    with pytest.raises(SmpcError, match="benchmarks/smpc_compare/ was not found"):
        harness_command(["--repo", str(tmp_path), "--n", "1e4"])
    assert split_repo(["--n", "1", f"--repo={ROOT}", "--quiet"]) == (str(ROOT), ["--n", "1", "--quiet"])
    command = harness_command(["--repo", str(ROOT), "--n", "1e4"])
    assert command[0] == sys.executable and command[-2:] == ["--n", "1e4"] and str(BENCH) in command[2]

    with pytest.raises(SmpcError, match="no system left"):
        harness_cli.execute(harness_cli.build_parser().parse_args(["--no-crypten", "--systems", "crypten-tfp"]))
    with pytest.raises(SmpcError, match="RTT_MS"):
        harness_cli.execute(harness_cli.build_parser().parse_args(["--no-crypten", "--wan", "fast"]))


def test_smpc_bench_passes_every_word_to_the_harness(tmp_path):
    """`smpc bench --help` is the harness's help under the name `smpc bench`; a bad option is
    refused by the harness's parser (exit 2); outside a checkout the error says what is missing."""
    def smpc(*argv, cwd=ROOT):
        return subprocess.run([sys.executable, "-m", "smpc.cli", *argv], cwd=cwd, capture_output=True,
                              text=True, timeout=120)

    helped = smpc("bench", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: smpc bench")
    assert "--lending-rows" in helped.stdout
    refused = smpc("bench", "--ops", "mul,nope")
    assert refused.returncode == 2 and "choose from" in refused.stderr
    missing = smpc("bench", "--repo", str(tmp_path), "--n", "1e4", cwd=tmp_path)
    assert missing.returncode == 1 and "not shipped in the installed package" in missing.stderr


def test_link_shape_parsing():
    assert relay.LinkShape.parse("20") == relay.LinkShape(20.0, None)
    assert relay.LinkShape.parse("20,100").rate_bytes == 12.5e6
    for bad in ("", "x", "20,0", "-1", "1,2,3"):
        with pytest.raises(ValueError):
            relay.LinkShape.parse(bad)


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:  # closed by the test before anyone connected
            return
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_relay_forwards_bytes_intact_and_counts_them():
    srv, port = _echo_server()
    payload = os.urandom(300_000)
    with relay.RelayProcess(relay.LinkShape(2, 500)) as r:
        relay_port = r.relay_to("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", relay_port), timeout=30) as s:
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += s.recv(1 << 20)
        assert got == payload
        assert r.bytes_forwarded() == 2 * len(payload)
        with pytest.raises(RuntimeError, match="loopback"):
            r.relay_to("10.0.0.1", 80)
        pid = r.process.pid
    srv.close()
    assert not relay.pid_alive(pid) or r.process.exitcode is not None


def _swapped(port: int) -> int:
    return struct.unpack("<H", struct.pack(">H", port))[0]


def test_gloo_relay_port_sorts_like_the_real_one():
    """Gloo compares sin_port as a native integer: the relay port must be adjacent in that order."""
    with relay.RelayProcess(relay.LinkShape(0)) as r:
        srv, port = _echo_server()
        q = relay.request_relay(r.control, "127.0.0.1", port, gloo=True)
        assert abs(_swapped(q) - _swapped(port)) == 1
        srv.close()


def test_rewrite_gloo_address():
    host = b"vm"
    sockaddr = struct.pack("<H", 2) + struct.pack(">H", 40000) + socket.inet_aton("127.0.0.1") + bytes(120)
    addr = sockaddr + struct.pack("<q", 7)  # sockaddr_storage + sequence number
    record = struct.pack("<Q", len(host)) + host + struct.pack("<Q", len(addr)) + addr + struct.pack("<Qqq", 2, 1, 2)
    seen = []

    def relay_port(h, p):
        seen.append((h, p))
        return 41000

    new = crypten_compat.rewrite_gloo_address(record, relay_port)
    assert seen == [("127.0.0.1", 40000)]
    assert len(new) == len(record)
    assert struct.unpack_from(">H", new, 18 + 2)[0] == 41000
    assert new[:20] == record[:20] and new[22:] == record[22:]
    assert crypten_compat.rewrite_gloo_address(b"not a gloo record", relay_port) is None
    assert crypten_compat.rewrite_gloo_address(b"\x00" * 40, relay_port) is None


def test_token_bucket_never_exceeds_its_burst():
    async def main():
        bucket = relay.TokenBucket(rate=1e9, burst=1000)
        for _ in range(5):
            await bucket.take(1000)
            assert bucket.tokens <= bucket.burst

    asyncio.run(main())


def test_the_harness_name_collides_with_nothing_installed():
    """CrypTen's wheel installs a top-level ``benchmarks`` package, which shadowed a
    ``benchmarks.compare``; the harness is ``smpc_compare``, a name no installed package
    has, and it starts as a folder and as a module."""
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('smpc_compare'))"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr
    for argv, env in (([str(BENCH / "smpc_compare"), "--help"], None),
                      (["-m", "smpc_compare", "--help"], dict(os.environ, PYTHONPATH=str(BENCH)))):
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert proc.returncode == 0 and "--n" in proc.stdout, proc.stdout + proc.stderr
