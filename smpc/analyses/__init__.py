"""The named job catalogue banks approve (see ``registry`` for the interface).

Importing this package registers every analysis module listed in ``MODULES``; add a new
module there.
"""

from importlib import import_module

from smpc.analyses.registry import Analysis, Param, analyses, get, names, register, report_progress

MODULES = ["credit", "statistics", "fraud", "fraud_rings", "discrimination", "scorecards"]

for _module in MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["Analysis", "MODULES", "Param", "analyses", "get", "names", "register", "report_progress"]
