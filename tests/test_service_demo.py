"""`make demo` (examples/consortium_demo.py) runs end to end: three services, fresh
certificates, jobs through the job service, results equal to the plaintext answers, a clean
shutdown and intact audit logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_consortium_demo_runs_end_to_end(tmp_path):
    # its own session: on a timeout the demo's three party services are killed with it
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "consortium_demo.py"), "--keep", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("the demo did not finish within 600 s:\n" + stdout[-3000:] + stderr[-3000:])
    finally:
        if proc.poll() is None:  # e.g. Ctrl-C while waiting
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    text = stdout
    assert "all three services healthy (mutual TLS)" in text
    assert "MISMATCH" not in text and "all results equal the plaintext answers" in text
    assert "refused: bank_c refuses job" in text and "policy.allowed_columns.default_rate_overall" in text
    assert "services stopped cleanly" in text
    assert text.count("chain intact") == 3
