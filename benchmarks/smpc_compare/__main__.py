"""``python benchmarks/smpc_compare [options]``: the same as ``smpc bench [options]``."""

import sys
from pathlib import Path

if __package__ in (None, ""):
    # run as a folder: make ``smpc_compare`` importable as a package (benchmarks/ first on the path)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smpc_compare.cli import main  # noqa: E402

sys.exit(main())
