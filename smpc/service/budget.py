"""A party's privacy budget: the epsilon that differentially private jobs (``dp_epsilon``) may
spend on each of its data sources per period, kept in its own ledger and enforced by itself.

Policy (``[policy.dp]`` in the party configuration)::

    [policy.dp]
    budget_per_source = { loans = 3.0 }   # epsilon per period and source
    period = "month"                      # calendar day, month or year, UTC
    required = true                       # refuse jobs without dp_epsilon on those sources

Semantics:

- Every compute party debits a job's epsilon from its own ledger for the source the job reads,
  while it decides on the job (``Prepare``), after every other check passed and before any share
  moves. The debit and the check against the budget are one SQLite transaction in the party's
  job store (``JobStore.debit_epsilon``), fsynced, so it survives restarts, and two concurrent
  jobs can never both spend the last epsilon. Each debit and refund is in the audit log
  (``dp_debit``, ``dp_refund``, ``dp_refused``). A job runs only if all three parties accepted,
  so it runs only if every party's budget allowed it.
- Composition: basic sequential composition per source and period: the epsilons of the jobs
  on a source add up. A source without a budget is debited too (the ledger shows what was
  spent) but never refused.
- Refunds: a job that never started here -- refused by another party or by the coordinator,
  a party unreachable before the start, cancelled before the start -- gets its debit back
  (nothing was computed, nothing released). A job that started keeps its debit, whether it
  succeeds, fails or is cancelled: part of it may have been opened. A job that was unfinished
  when the party restarted keeps its debit (whether it started is not known for sure).
- The refusal names the source, the job's epsilon and the epsilon that remains in the period.
  That remainder is this party's own policy state: it follows from the budget and the jobs
  run on the source this period (which the requesters of the consortium submitted and the
  audit logs record), never from any bank's rows, so it may be told to the requester.
"""

from __future__ import annotations

import time
from fractions import Fraction

from smpc.errors import PolicyError
from smpc.service.audit import AuditLog
from smpc.service.config import PartyConfig
from smpc.service.store import JobStore

DP_EPSILON = "dp_epsilon"
BUDGET_RULE = "policy.dp.budget_per_source"
REQUIRED_RULE = "policy.dp.required"


def period_of(period: str, now: float | None = None) -> str:
    """The ledger period a time falls in: '2026-12-07', '2026-12' or '2026' (UTC)."""
    stamp = time.gmtime(time.time() if now is None else now)
    return {"day": time.strftime("%Y-%m-%d", stamp), "month": time.strftime("%Y-%m", stamp),
            "year": time.strftime("%Y", stamp)}[period]


def epsilon_of(params) -> Fraction | None:
    """A job's epsilon as the exact decimal it prints as, or None for a job without one."""
    value = params.get(DP_EPSILON)
    return None if value is None else Fraction(repr(float(value)))


class PrivacyBudget:
    """One party's ledger: debit, refund, show."""

    def __init__(self, config: PartyConfig, store: JobStore, audit: AuditLog | None):
        self.config = config
        self.store = store
        self.audit = audit

    def budget(self, source: str) -> Fraction | None:
        value = self.config.policy.dp_budget.get(source)
        return None if value is None else Fraction(repr(float(value)))

    def debit(self, job_id: str, source: str, epsilon: Fraction, requester: str, now: float | None = None) -> None:
        """Debit ``epsilon`` for ``job_id`` from ``source``; ``PolicyError`` (nothing debited)
        naming the source and the epsilon that remains when it would exceed the budget."""
        period = period_of(self.config.policy.dp_period, now)
        budget = self.budget(source)
        remaining = self.store.debit_epsilon(job_id, source, period, epsilon, requester, budget)
        if remaining is not None:
            if self.audit is not None:
                self.audit.record("dp_refused", job_id=job_id, source=source, period=period, epsilon=str(epsilon),
                                  remaining=str(remaining), budget=str(budget))
            raise PolicyError(f"{self.config.name} refuses job {job_id}: its privacy budget for data source "
                              f"'{source}' has epsilon {float(remaining):g} left this {self.config.policy.dp_period} "
                              f"({period}), less than the job's {float(epsilon):g} (rule {BUDGET_RULE})")
        if self.audit is not None:
            self.audit.record("dp_debit", job_id=job_id, source=source, period=period, epsilon=str(epsilon),
                              budget=None if budget is None else str(budget))

    def refund(self, job_id: str, reason: str) -> None:
        if self.store.refund_epsilon(job_id, reason) and self.audit is not None:
            self.audit.record("dp_refund", job_id=job_id, reason=reason)

    def summary(self, now: float | None = None) -> list[dict]:
        """Per source with a budget or a debit: budget, spent and remaining this period."""
        period = period_of(self.config.policy.dp_period, now)
        sources = list(self.config.policy.dp_budget)
        sources += sorted({row["source"] for row in self.store.ledger()} - set(sources))
        out = []
        for source in sources:
            budget = self.budget(source)
            spent = self.store.spent_epsilon(source, period)
            out.append({"source": source, "period": period, "budget": None if budget is None else float(budget),
                        "spent": float(spent), "remaining": None if budget is None else float(budget - spent)})
        return out


__all__ = ["BUDGET_RULE", "REQUIRED_RULE", "PrivacyBudget", "epsilon_of", "period_of"]
