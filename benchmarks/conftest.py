"""Shared set-up for the kernel benchmarks (run with ``make bench``; ``make test`` never collects
this folder: pytest's testpaths is ``tests``).

Timings are medians over rounds; pytest-benchmark stores every round in the JSON so
``benchmarks/report.py`` can rebuild the table. The machine description (core count, torch
threads, whether the C ring kernels are built) goes into the JSON's ``machine_info``.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # for ``parties`` (this folder is not a package)

import smpc  # noqa: E402
from smpc import ring as ring_mod  # noqa: E402
from smpc.allocator import allocator_tuning  # noqa: E402


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["nproc"] = os.cpu_count()
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["smpc"] = smpc.__version__
    machine_info["c_ring_kernels"] = ring_mod.c_kernels_available()
    machine_info["malloc_tuning"] = allocator_tuning()


@pytest.fixture
def c_kernels(request):
    """Parametrise a benchmark over the C kernels and the pure-torch path ("c" / "torch")."""
    impl = request.param
    if impl == "c" and not ring_mod.c_kernels_available():
        pytest.skip("C ring kernels not built")
    previous = ring_mod.use_c_kernels(impl == "c")
    yield impl
    ring_mod.use_c_kernels(previous)
