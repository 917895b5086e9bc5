"""Process plumbing shared by the party workers: dying with the driver, peak RSS, threads."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Make this process end when the driver that started it ends, however it ends.

    Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, plus a watchdog thread for the case where the
    parent died before the call (or another OS): no party or relay outlives a crashed run.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        stop = threading.Event()
        while not stop.wait(1.0):
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="smpc-bench-watchdog", daemon=True).start()


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux: ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last ``reset_peak_rss`` (or since the start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    """Current resident set size (Linux VmRSS; 0 where unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads (and OpenMP's) for this party process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def trim_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), so that the next op's
    peak RSS is not inflated by what an earlier op left in the allocator."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
