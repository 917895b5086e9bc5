"""The party processes: one command loop, two back ends (smpc over gRPC, CrypTen over gloo).

The driver sends each party of a system the same commands over a pipe:

    ("setup", op_key, n, seed, job_id[, options])  share the op's inputs (untimed); reset the
                                 peak-RSS counter (options: lending_rows, data_dir)
    ("run", want_result)         barrier, then time the op on this party; reply with seconds,
                                 the communication counters, peak RSS (and rank 0 the result)
    ("teardown",)                drop the op's state
    ("stop",)                    leave

Every reply is ("ok", payload) or ("error", kind, message). The time of an op is measured on
each party from the end of a barrier to its last received byte; the driver takes the max over
parties.
"""

from __future__ import annotations

import os
import time
import traceback

import numpy as np

from smpc_compare import workload
from smpc_compare.procs import die_with_parent, peak_rss_bytes, reset_peak_rss, rss_bytes, set_threads, trim_memory


def _loop(conn, backend) -> None:
    op = None
    while True:
        msg = conn.recv()
        cmd = msg[0]
        try:
            if cmd == "stop":
                backend.shutdown()
                conn.send(("ok", None))
                return
            if cmd == "setup":
                _, key, n, seed, job_id, *rest = msg
                options = rest[0] if rest else {}
                op = workload.ops_for(n, options.get("lending_rows"))[key]
                trim_memory()
                reset_peak_rss()
                before = rss_bytes()  # what earlier ops left behind is part of this op's peak
                backend.setup(op, workload.owned_inputs(op, seed, backend.rank, options.get("data_dir")), job_id)
                conn.send(("ok", {"peak_rss": peak_rss_bytes(), "rss_before_setup": before}))
            elif cmd == "run":
                seconds, comm, result = backend.run(op, want_result=msg[1])
                conn.send(("ok", {"seconds": seconds, "comm": comm, "peak_rss": peak_rss_bytes(), "result": result}))
            elif cmd == "teardown":
                backend.teardown()
                op = None
                trim_memory()
                conn.send(("ok", None))
            else:
                conn.send(("error", "ProtocolError", f"unknown command {cmd!r}"))
        except workload.Unavailable as exc:
            backend.failed(exc)
            conn.send(("error", "unavailable", str(exc)))
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the driver
            backend.failed(exc)
            conn.send(("error", type(exc).__name__, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"))


# ----- smpc ------------------------------------------------------------------------------
class SmpcBackend:
    def __init__(self, rank: int, node, timeout: float):
        self.rank = rank
        self.node = node
        self.timeout = timeout  # per receive: a stalled peer ends the op instead of hanging the run
        self.transport = None
        self.ctx = None
        self.state = None

    def setup(self, op, mine, job_id: str) -> None:
        from smpc.context import Context

        self.teardown()
        self.transport = self.node.open_job(job_id)
        from smpc_compare.grpc_parties import NAMES

        self.ctx = Context(self.rank, 3, self.transport, ring=op.smpc_ring, frac_bits=op.smpc_frac,
                           timeout=self.timeout, party_names=NAMES)
        self.state = workload.smpc_setup(self.ctx, op, mine)

    def _barrier(self) -> None:
        import torch

        others = [p for p in range(3) if p != self.rank]
        token = torch.zeros(1, dtype=torch.int64)
        self.ctx.exchange("bench-barrier", sends={p: token for p in others}, recv_from=others)

    def run(self, op, want_result: bool):
        self._barrier()
        self.ctx.reset_comm_stats()
        t0 = time.perf_counter()
        out = workload.smpc_run(self.ctx, op, self.state)
        seconds = time.perf_counter() - t0
        stats = self.ctx.comm_stats()
        comm = {"bytes_sent": int(stats["bytes_sent"]), "rounds": int(stats["rounds"])}
        result = None
        if op.key in workload.EXACT_OPS:  # every party: opening the rows is collective (untimed)
            result = workload.smpc_collect(self.ctx, op, out) if want_result else None
        elif want_result and self.rank == 0 and out is not None:
            result = {"value": out.to("cpu").double().numpy().copy()}
        return seconds, comm, result

    def teardown(self) -> None:
        self.state = None
        self.ctx = None
        if self.transport is not None:
            self.node.close_job(self.transport)
            self.transport = None

    def failed(self, exc) -> None:
        if self.transport is not None:
            self.transport.abort(f"{type(exc).__name__}: {exc}", type(exc).__name__)

    def shutdown(self) -> None:
        self.teardown()
        self.node.stop()


def smpc_party(rank: int, conn, certs: str, threads: int, timeout: float) -> None:
    """Entry point of an smpc party process."""
    die_with_parent()
    set_threads(threads)
    from smpc_compare.grpc_parties import PartyNode

    node = PartyNode(rank, certs)
    conn.send(("ok", {"port": node.port, "pid": os.getpid()}))
    msg = conn.recv()  # ("connect", {peer: address})
    node.connect(msg[1])
    conn.send(("ok", None))
    _loop(conn, SmpcBackend(rank, node, timeout))


# ----- CrypTen ---------------------------------------------------------------------------
class CryptenBackend:
    def __init__(self, rank: int, crypten):
        self.rank = rank
        self.crypten = crypten
        self.state = None

    def setup(self, op, mine, job_id: str) -> None:
        self.state = workload.crypten_setup(self.crypten, op, mine)

    def run(self, op, want_result: bool):
        from smpc_compare import crypten_compat

        crypten = self.crypten
        comm = crypten.comm.get()
        comm.barrier()
        crypten.reset_communication_stats()
        t0 = time.perf_counter()
        out = workload.crypten_run(crypten, op, self.state)
        seconds = time.perf_counter() - t0
        stats = comm.get_communication_stats()
        counters = {"bytes_sent": int(stats["bytes"]), "rounds": int(stats["rounds"]),
                    "comm_seconds": float(stats["time"])}
        result = None
        if want_result and self.rank == 0 and out is not None:
            raw, encoder, decoded = out
            stock = crypten_compat.stock_decode(encoder, raw)
            fixed = crypten_compat.fixed_decode(encoder, raw)
            result = {"value": decoded.double().numpy().copy(), "stock": stock.double().numpy().copy(),
                      "fixed": fixed.double().numpy().copy()}
        return seconds, counters, result

    def teardown(self) -> None:
        self.state = None

    def failed(self, exc) -> None:
        pass

    def shutdown(self) -> None:
        self.state = None
        self.crypten.uninit()


def crypten_party(rank: int, conn, provider: str, rendezvous: str, threads: int, relay_control, decode_fix: bool,
                  world_size: int = 3) -> None:
    """Entry point of a CrypTen party process (rank == world_size: the TTP server)."""
    die_with_parent()
    os.environ.update(RENDEZVOUS=f"file://{rendezvous}", WORLD_SIZE=str(world_size), RANK=str(rank),
                      DISTRIBUTED_BACKEND="gloo", GLOO_SOCKET_IFNAME="lo")
    set_threads(threads)
    from smpc_compare import crypten_compat

    crypten = crypten_compat.load()
    if relay_control is not None:
        crypten_compat.install_relay_store(tuple(relay_control), rendezvous)
    crypten_compat.set_decode_fix(decode_fix)
    crypten.cfg.mpc.provider = provider
    crypten.cfg.communicator.verbose = True
    if rank == world_size:
        from crypten.mpc.provider.ttp_provider import TTPServer

        conn.send(("ok", {"pid": os.getpid()}))
        TTPServer()  # returns when party 0 sends "terminate" (crypten.uninit)
        return
    crypten.init()
    conn.send(("ok", {"pid": os.getpid()}))
    _loop(conn, CryptenBackend(rank, crypten))


def as_float64(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)
