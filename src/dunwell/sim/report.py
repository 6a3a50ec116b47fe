"""Showing a simulation: one JSON document (stable bytes) or a Rich table for people."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from dunwell.domain.money import Money


def to_json(result: dict[str, Any]) -> str:
    # Sorted keys and no timings: the same seed must give the same bytes.
    return json.dumps(result, indent=2, sort_keys=True)


def to_table(result: dict[str, Any]) -> Table:
    p = result["parameters"]
    table = Table(
        title=(
            f"{p['customers']} customers, {p['days']} days from {p['start'][:10]}, seed {p['seed']}"
        )
    )
    for column in ("policy", "cases", "recovered", "churned", "other", "open"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for column in ("recovered amount", "failed amount", "attempts", "notices", "violations"):
        table.add_column(column, justify="right")
    for name, m in result["policies"].items():
        other = ", ".join(f"{v} {k}" for k, v in m["other"].items() if v) or "0"
        violations = m["guardrail_violations"]["total"]
        table.add_row(
            name,
            str(m["cases"]),
            str(m["recovered"]),
            str(m["churned"]),
            other,
            str(m["open"]),
            _money(m["recovered_amount"]),
            _money(m["failed_amount"]),
            str(m["attempts"]),
            str(m["notices"]),
            str(violations) if violations == 0 else f"[bold red]{violations}[/]",
        )
    return table


def _money(value: dict[str, Any]) -> str:
    return str(Money(value["amount_minor"], value["currency"]))
