"""Shared test configuration: a derandomised hypothesis profile and the kernel-path switch.

Hypothesis runs derandomised (a fixed seed per test), so a failure reproduces on every run
and the suite never flakes; set SMPC_HYPOTHESIS_PROFILE=thorough for a longer local search
(random seeds, many more examples).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from smpc import ring as ring_module
from smpc.secret import SecretTensor

settings.register_profile(
    "smpc",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=2000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.load_profile(os.environ.get("SMPC_HYPOTHESIS_PROFILE", "smpc"))


KERNEL_PATHS = ("c", "torch")


@pytest.fixture(params=KERNEL_PATHS)
def kernel_path(request):
    """Run a test once on the C kernels and once on the pure-torch kernels (the C run is
    skipped where the extension is not built); restores the previous switch afterwards."""
    if request.param == "c" and not ring_module.c_kernels_available():
        pytest.skip("C ring kernels not built on this machine")
    previous = ring_module.use_c_kernels(request.param == "c")
    try:
        yield request.param
    finally:
        ring_module.use_c_kernels(previous)


@pytest.fixture(params=("wide", "narrow"))
def aes_width(request):
    """Run a test with the C AES kernels on their VAES path (where the CPU has it) and on the
    128-bit AES-NI path, so both are checked on a VAES machine; restores the CPU's choice."""
    kernels = ring_module.c_kernels()
    if kernels is None or not hasattr(kernels, "aes_use_wide"):
        yield request.param
        return
    kernels.aes_use_wide(request.param == "wide")
    try:
        yield request.param
    finally:
        kernels.aes_use_wide(True)


@pytest.fixture
def opened(monkeypatch):
    """Every vector compute party 0 opens during the test, as exact integers, in order."""
    log: list[list[int]] = []
    original = SecretTensor._open

    def spy(self, to):
        out = original(self, to)
        if out is not None and self.ctx.rank == 0:
            log.append([int(v) for v in self.ring.to_ints(out, signed=True)])
        return out

    monkeypatch.setattr(SecretTensor, "_open", spy)
    return log
