"""`make demo` (examples/consortium_demo.py) runs end to end: three services, fresh
certificates, jobs through the job service, results equal to the plaintext answers, a clean
shutdown and intact audit logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_consortium_demo_runs_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "consortium_demo.py"), "--keep", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "all three services healthy (mutual TLS)" in text
    assert "MISMATCH" not in text and "all results equal the plaintext answers" in text
    assert "refused: bank_c refuses job" in text and "policy.allowed_columns.default_rate_overall" in text
    assert "services stopped cleanly" in text
    assert text.count("chain intact") == 3
