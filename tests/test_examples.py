"""Every example a developer copies from must run as shipped (from the repository root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# examples that start party services or need arguments have their own tests
SKIP = {"_banks.py"}
SERVICE_EXAMPLES = {"consortium_demo.py", "submit_job.py"}


@pytest.mark.parametrize(
    "script", sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in SKIP | SERVICE_EXAMPLES)
)
def test_example_runs(script):
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip(), "an example must show its result"
