"""`pip install .` without make: a wheel with the C kernels, or without a compiler the
pure-torch kernels and a warning at import; either way the README's one-liner runs from the
installed package, not from this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONE_LINER = (
    "import torch, smpc; "
    "print(smpc.__file__); "
    "print(float(smpc.simulate(lambda ctx, x=None: (smpc.share(ctx, x, owner=0, bound=1e9) * 2).sum().reveal(), "
    "inputs={0: {'x': torch.tensor([1.25, 1e6, -3.5], dtype=torch.float64)}})[1])); "
    "import smpc.ring; print(getattr(smpc.ring.c_kernels(), '__file__', None))"
)
NO_COMPILER_WARNING = "the C ring kernels are not built"


def clean_source(dest: Path) -> Path:
    """The checkout's files as a fresh clone has them (no build/, no in-place .so)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for name in listed:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def build_wheel(out: Path, env: dict | None = None) -> Path:
    source = clean_source(out.parent / "src")
    # --no-build-isolation: build with the locked setuptools of this venv (no index needed)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("smpc-*.whl")
    return wheel


def install(wheel: Path, tmp: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Install ``wheel`` under ``tmp``; returns a function that runs that installation's Python
    with the given arguments, outside the checkout."""
    target = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A venv of its own that sees this venv's packages (torch, numpy, ...) through a .pth line:
    # such a path gets no .pth processing, so the editable install of this checkout (a .pth
    # finder that maps smpc, C kernels included, to the source tree) stays out.
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    dependencies = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (next(venv.glob("lib/python*/site-packages")) / "dependencies.pth").write_text(dependencies + "\n")
    # run outside the checkout, so `import smpc` can only find the installed copy
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "python"), *argv], capture_output=True, text=True, cwd=tmp,
                              env=env, timeout=300)

    return run


def install_and_run(wheel: Path, tmp: Path) -> subprocess.CompletedProcess:
    return install(wheel, tmp)("-c", ONE_LINER)


def test_wheel_with_the_c_kernels(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("smpc/_ringkernels") and n.endswith(".so") for n in names), names
    assert {n.split("/")[0] for n in names if "/" in n} <= {"smpc", wheel.name.split("-")[0] + "-0.1.0.dist-info"}
    installed = install(wheel, tmp_path)
    run = installed("-c", ONE_LINER)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(tmp_path / "site"))
    assert float(run.stdout.splitlines()[1]) == (1.25 + 1e6 - 3.5) * 2
    assert run.stdout.splitlines()[2].startswith(str(tmp_path / "site" / "smpc" / "_ringkernels"))
    assert NO_COMPILER_WARNING not in run.stderr
    # the benchmark harness is the checkout's, not the package's: one clear error, no traceback
    bench = installed("-m", "smpc.cli", "bench", "--n", "1e4")
    assert bench.returncode == 1, bench.stdout + bench.stderr
    assert "not shipped in the installed package" in bench.stderr and "Traceback" not in bench.stderr


@pytest.mark.slow
def test_wheel_without_a_compiler_falls_back_and_says_so(tmp_path):
    env = dict(os.environ, CC="/bin/false", LDSHARED="/bin/false")
    wheel = build_wheel(tmp_path / "dist", env=env)
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.endswith(".so") for n in names), names
    run = install_and_run(wheel, tmp_path)
    assert run.returncode == 0, run.stderr
    assert NO_COMPILER_WARNING in run.stderr and "pure-torch kernels" in run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(tmp_path / "site"))
    assert float(lines[1]) == (1.25 + 1e6 - 3.5) * 2
    assert lines[2] == "None"
