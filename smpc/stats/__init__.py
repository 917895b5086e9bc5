"""Statistics over secret-shared columns, named like Python's ``statistics`` and pandas.

Columns are horizontally partitioned (each bank holds its own rows, ``share_column`` +
``concat``); missing values follow pandas' ``skipna`` through a secret availability mask.
Every function reveals only what its ``Leakage:`` section says, to the ranks in ``to``
(default: every party), and returns None on other ranks.

Sums and counts are exact; mean, var, std, cov and corr are finished in exact rational
arithmetic from revealed sufficient statistics that their outputs determine, so they match
pandas to float64 rounding on the encoded inputs.
"""

from smpc.stats.columns import Column, concat, share_column
from smpc.stats.correlation import corr, cov, cross_moments
from smpc.stats.descriptive import count, max, mean, min, moments, std, stdev, sum, var, var_from_moments, variance
from smpc.stats.groupby import group_totals, groupby_mean
from smpc.stats.histogram import histogram

__all__ = [
    "Column",
    "concat",
    "corr",
    "count",
    "cov",
    "cross_moments",
    "group_totals",
    "groupby_mean",
    "histogram",
    "max",
    "mean",
    "min",
    "moments",
    "share_column",
    "std",
    "stdev",
    "sum",
    "var",
    "var_from_moments",
    "variance",
]
