"""A party's decision on a job request, taken locally before any share moves.

``decide(config, spec)`` applies this party's policy to a job (allowed analyses, allowed
columns per analysis, allowed result recipients, minimum cell size, maximum rows), parses the
parameters against the catalogue's schema, loads the input columns with their declared types
and runs the analysis' own input check. An analysis that answers its requester only
(a ``requester`` parameter: ``blacklist_hits``) must name the job's authenticated requester,
a bank with data, and have no other recipient; one that releases no per-group statistics
(``multi_lending``, ``blacklist_hits``) is not subject to the minimum cell size. A refusal
names this party and the rule; policy refusals are ``PolicyError``, data problems
``InputError``. No grpc here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smpc.analyses import registry
from smpc.analyses.registry import MIN_CELL_SIZE, REQUESTER
from smpc.errors import InputError, RangeError, SmpcError
from smpc.service.config import DataSource, PartyConfig


@dataclass(frozen=True)
class JobRequest:
    """What every party decides on (the wire's ``JobSpec``)."""

    job_id: str
    analysis: str
    params: Mapping[str, str]
    source: str
    requester: str
    recipients: Sequence[str]
    coordinator: str
    parties: Sequence[str]


@dataclass
class Decision:
    accepted: bool
    party: str
    rule: str = ""
    error_type: str = ""
    message: str = ""
    min_cell_size: int = 1
    params: dict = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    table: Any = None

    def as_audit(self) -> dict:
        out = {"decision": "accept" if self.accepted else "refuse"}
        if not self.accepted:
            out.update(rule=self.rule, error_type=self.error_type, reason=self.message)
        else:
            out.update(min_cell_size=self.min_cell_size, columns=self.columns, rows=self.rows)
        return out


def decide(config: PartyConfig, req: JobRequest) -> Decision:
    party = config.name
    pol = config.policy

    def refuse(rule: str, what: str, error_type: str = "PolicyError") -> Decision:
        return Decision(False, party, rule, error_type, f"{party} refuses job {req.job_id}: {what} (rule {rule})")

    if list(req.parties) != list(config.ranks):
        return refuse("compute.ranks",
                      f"the job's rank order {list(req.parties)} differs from ours {list(config.ranks)}")
    if req.analysis not in pol.allowed_analyses:
        return refuse("policy.allowed_analyses", f"analysis '{req.analysis}' is not allowed here")
    try:
        analysis = registry.get(req.analysis)
    except InputError as exc:
        return refuse("catalogue", str(exc), "InputError")
    try:
        params = analysis.parse_params(dict(req.params))
    except InputError as exc:
        return refuse("params", str(exc), "InputError")
    for who in [req.requester, *req.recipients]:
        if who not in pol.allowed_recipients:
            return refuse("policy.allowed_recipients", f"'{who}' may not receive results from this party")
    if analysis.requester_only:
        # the result is for the requesting bank only: it is the authenticated requester, and
        # nobody else may be handed the result
        if params.get(REQUESTER) != req.requester:
            return refuse("params.requester",
                          f"{analysis.name} answers its requester only: parameter 'requester' is "
                          f"{params.get(REQUESTER)!r} but the job was requested by '{req.requester}'")
        if req.requester not in req.parties:
            return refuse("params.requester",
                          f"{analysis.name} answers a bank about its own data: the requester '{req.requester}' "
                          f"is not one of the banks ({', '.join(req.parties)})")
        others = [who for who in req.recipients if who != req.requester]
        if others:
            return refuse("recipients.requester_only",
                          f"{analysis.name} reveals its result to its requester only; "
                          f"{', '.join(repr(w) for w in others)} may not be a recipient")
    min_cell = 1
    if analysis.has_min_cell_size:
        requested = params.get(MIN_CELL_SIZE) or 1
        min_cell = max(int(requested), pol.min_cell_size)
        params[MIN_CELL_SIZE] = min_cell
    elif pol.min_cell_size > 1 and analysis.releases_cells:
        return refuse(
            "policy.min_cell_size",
            f"analysis '{analysis.name}' has no minimum cell size, and this party requires {pol.min_cell_size}",
        )
    source = config.data.get(req.source)
    if source is None:
        return refuse(
            "data", f"no data source '{req.source}' (this party has: {', '.join(config.data)})", "InputError"
        )
    columns = analysis.columns(params)
    allowed = pol.allowed_columns.get(analysis.name, ())
    for col in columns:
        if col not in allowed:
            return refuse(
                f"policy.allowed_columns.{analysis.name}",
                f"column '{col}' may not be used by {analysis.name} (allowed: {', '.join(allowed) or 'none'})",
            )
    for col in columns:
        if col not in source.columns:
            return refuse(f"data.{source.name}.columns", f"data source '{source.name}' declares no column '{col}'",
                          "InputError")
    try:
        table = load_table(source, columns, party)
    except InputError as exc:
        return refuse(f"data.{source.name}", str(exc), "InputError")
    if len(table) > pol.max_rows:
        return refuse("policy.max_rows",
                      f"data source '{source.name}' has more rows than the maximum of {pol.max_rows}")
    try:
        analysis.check_input(table, party, params)
    except (InputError, RangeError) as exc:
        return refuse(f"data.{source.name}", str(exc), type(exc).__name__)
    except SmpcError as exc:
        return refuse("params", str(exc), type(exc).__name__)
    return Decision(True, party, min_cell_size=min_cell, params=params, columns=columns, rows=len(table),
                    table=table)


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def load_table(source: DataSource, columns: Sequence[str], party: str) -> pd.DataFrame:
    """The named columns of a data source, checked against their declared types.

    ``int``/``float`` columns must hold numbers (empty cells stay NaN), ``int`` ones whole
    numbers; ``bool`` ones true/false/1/0; ``str`` columns are read as text. Anything else
    raises ``InputError`` naming the party, source, column, row and value.
    """
    columns = list(columns)
    where = f"{party}, data source '{source.name}'"
    try:
        if source.format == "csv":
            text_cols = {c: str for c in columns if source.columns[c] in ("str", "bool")}
            frame = pd.read_csv(source.path, usecols=columns, dtype=text_cols)
        else:
            frame = pd.read_parquet(source.path, columns=columns)
    except Exception as exc:  # noqa: BLE001 - any reader failure is an input problem for the operator
        raise InputError(f"{where}: cannot read {source.path.name} as {source.format} ({exc})") from None
    # a refusal reaches the coordinator, the other banks and the requester: rows, never values
    for col in columns:
        kind = source.columns[col]
        series = frame[col]
        if kind in ("int", "float"):
            numeric = pd.to_numeric(series, errors="coerce")
            bad = (numeric.isna() & series.notna()).to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{where}, column '{col}' (declared {kind}): row {row + 1} is not a number"
                )
            values = numeric.to_numpy(dtype=np.float64)
            if kind == "int":
                frac = np.isfinite(values) & (values != np.round(values))
                if frac.any():
                    row = int(np.flatnonzero(frac)[0])
                    raise InputError(
                        f"{where}, column '{col}' (declared int): row {row + 1} is not a whole number"
                    )
                if not np.isnan(values).any():
                    numeric = numeric.astype(np.int64)
            frame[col] = numeric
        elif kind == "bool":
            text = series.astype(str).str.strip().str.lower()
            ok = text.isin(_TRUE | _FALSE) | series.isna()
            if not ok.all():
                row = int(np.flatnonzero(~ok.to_numpy())[0])
                raise InputError(
                    f"{where}, column '{col}' (declared bool): row {row + 1} is not true/false"
                )
            frame[col] = text.isin(_TRUE).astype(np.int64).where(series.notna())
    return frame
