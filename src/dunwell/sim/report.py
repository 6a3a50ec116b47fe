"""Showing a simulation: one JSON document (stable bytes) or a Rich table for people."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from dunwell.domain.money import Money


def to_json(result: dict[str, Any]) -> str:
    # Sorted keys and no timings: the same seed must give the same bytes.
    return json.dumps(result, indent=2, sort_keys=True)


COLUMNS = (
    "cases",
    "recovered",
    "rate (count)",
    "rate (amount)",
    "recovered amount",
    "failed amount",
    "attempts/case",
    "notices/case",
    "median h to recover",
    "churned",
    "other",
    "open",
    "of oracle (amount)",
    "violations",
)


def to_table(result: dict[str, Any]) -> Table:
    p = result["parameters"]
    title = f"{p['customers']} customers, {p['days']} days from {p['start'][:10]}, seed {p['seed']}"
    if p.get("world"):
        title += f", world {p['world']}"
    oracle = result.get("oracle")
    if oracle:
        title += (
            f"\noracle: {oracle['share_by_count']:.1%} of cases "
            f"({oracle['share_by_amount']:.1%} of the amount) recoverable by some attempt "
            f"within {oracle['window_days']} days"
        )
    training = result.get("training")
    if training:
        auc = "-" if training["auc"] is None else f"{training['auc']:.3f}"
        title += (
            f"\nmodel: trained on {training['rows']} attempts of {training['cases']} cases seen in "
            f"a {training['days']}-day {training['policy']} period (other customers); "
            f"out-of-time AUC {auc}, Brier {training['brier']:.3f}"
        )
    table = Table(title=title)
    table.add_column("policy", justify="left", no_wrap=True)
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name, m in result["policies"].items():
        other = ", ".join(f"{v} {k}" for k, v in m["other"].items() if v) or "0"
        violations = m["guardrail_violations"]["total"]
        median = m["median_hours_to_recovery"]
        share = m["share_of_oracle"]
        table.add_row(
            name,
            str(m["cases"]),
            str(m["recovered"]),
            f"{m['recovery_rate']['by_count']:.1%}",
            f"{m['recovery_rate']['by_amount']:.1%}",
            _money(m["recovered_amount"]),
            _money(m["failed_amount"]),
            f"{m['attempts_per_case']:.2f}",
            f"{m['notices_per_case']:.2f}",
            "-" if median is None else f"{median:.1f}",
            f"{m['churned']} ({m['involuntary_churn']['rate']:.1%})",
            other,
            str(m["open"]),
            "-" if share is None else f"{share['by_amount']:.1%}",
            str(violations) if violations == 0 else f"[bold red]{violations}[/]",
        )
    return table


def _money(value: dict[str, Any]) -> str:
    return str(Money(value["amount_minor"], value["currency"]))
