"""glibc malloc settings for smpc's few, large tensors, applied once when ``smpc`` is imported
(``smpc/__init__.py`` imports this module before anything allocates a ring tensor).

``allocator_tuning()`` says what was applied; the benchmarks record it with their results.
"""

from __future__ import annotations

import ctypes
import os
import platform

# With glibc's defaults big tensors come from fresh pages: blocks over the (dynamic) mmap
# threshold are mmap'ed and unmapped on free, and each party thread gets its own arena whose
# heaps are trimmed or deleted when freed. A page fault costs ~3.5 us on the dev VM, so a
# 16 MiB result can pay 4-12 ms of faults before the kernel that fills it runs in ~2 ms.
# Default tuning: one arena, the largest fixed mmap threshold glibc allows (32 MiB: a 1e6
# element ring128 tensor is 16 MiB) and a 512 MiB trim threshold, so freed blocks up to
# 32 MiB come straight back from the heap. Measured against glibc's defaults (runs
# alternated, 3 party threads on 2 cores, 1e6 elements): RSS mul ring128 fixed point 78 vs
# 91 ms, ring128 integers 47 vs 56 ms, ring64 integers 37 vs 44 ms, no page faults in steady
# state, peak RSS within 8 %. The price: up to 512 MiB of freed memory stays mapped for
# reuse, and the threads share one malloc arena (smpc's allocations are few and large).
# SMPC_MALLOC_TUNING=nommap also serves blocks over 32 MiB from the heap: the RSS matmul
# 1e6x8 @ 8x8 on ring128 (128 MiB tensors) then takes 1.1 s instead of 2.5 s, but the peak
# RSS of that job grew from 2.4 to 5.1 GB (heap fragmentation), hence not the default.
# SMPC_MALLOC_TUNING=0 keeps glibc's defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -4, -3, -8
_TRIM_BYTES = 512 << 20
_MMAP_BYTES = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _tune_allocator() -> str | None:
    mode = os.environ.get("SMPC_MALLOC_TUNING", "1")
    if mode == "0" or _libc is None:
        return None
    try:
        if mode == "nommap":
            big, what = _libc.mallopt(_M_MMAP_MAX, 0), "M_MMAP_MAX=0"
        else:
            big, what = _libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES), f"M_MMAP_THRESHOLD={_MMAP_BYTES >> 20} MiB"
        ok = (_libc.mallopt(_M_ARENA_MAX, 1), big, _libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
    except AttributeError:
        return None
    if not all(ok):
        return None
    return f"glibc mallopt: M_ARENA_MAX=1, {what}, M_TRIM_THRESHOLD={_TRIM_BYTES >> 20} MiB"


def release_freed() -> None:
    """Hand the heap's freed pages back to the kernel (glibc ``malloc_trim``), between the
    sessions of a long-lived worker: with a 512 MiB trim threshold and one arena, up to
    512 MiB that one session freed would otherwise stay mapped while the next runs, and a
    worker's RSS would be its sessions' high-water mark plus whatever fragments they left,
    not one session's peak. A no-op without glibc.

    >>> release_freed()
    """
    if _libc is not None:
        _libc.malloc_trim(0)


def allocator_tuning() -> str | None:
    """The malloc settings smpc applied at import (None: glibc's defaults are in force)."""
    return _malloc_tuning


_libc = _glibc()
_malloc_tuning = _tune_allocator()
