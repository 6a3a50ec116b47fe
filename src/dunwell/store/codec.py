"""Explicit conversion between frozen domain values and JSON-able dicts.

The case is stored as one JSON document (plus indexed columns for queries), so that the
core's value is exactly what was saved: no ORM object ever reaches the domain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dunwell.domain.case import (
    ActionType,
    Attempt,
    AttemptStatus,
    CaseStatus,
    DeclineInfo,
    Notice,
    PlannedAction,
    RecoveryCase,
    Stage,
)
from dunwell.domain.events import Customer, PaymentMethod, Subscription
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _money(value: Money | None) -> dict[str, Any] | None:
    return None if value is None else {"amount": value.amount_minor, "currency": value.currency}


def _parse_money(value: dict[str, Any] | None) -> Money | None:
    return None if value is None else Money(int(value["amount"]), str(value["currency"]))


def case_to_dict(case: RecoveryCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "tenant_id": case.tenant_id,
        "invoice_id": case.invoice_id,
        "customer": vars_of(case.customer),
        "subscription": vars_of(case.subscription),
        "amount": _money(case.amount),
        "payment_method": vars_of(case.payment_method),
        "policy_name": case.policy_name,
        "opened_at": _dt(case.opened_at),
        "decline": {**vars_of(case.decline), "lane": case.decline.lane.value},
        "status": case.status.value,
        "stage": case.stage.value if case.stage else None,
        "access": case.access.value,
        "failures": case.failures,
        "last_failure_at": _dt(case.last_failure_at),
        "not_before": _dt(case.not_before),
        "escalated": case.escalated,
        "technical_retries": case.technical_retries,
        "customer_fixed_at": _dt(case.customer_fixed_at),
        "blocked_credentials": sorted(case.blocked_credentials),
        "attempts": [
            {
                **vars_of(a),
                "status": a.status.value,
                "started_at": _dt(a.started_at),
                "finished_at": _dt(a.finished_at),
            }
            for a in case.attempts
        ],
        "notices": [
            {**vars_of(n), "created_at": _dt(n.created_at), "delivered_at": _dt(n.delivered_at)}
            for n in case.notices
        ],
        "plan": [
            {
                "key": p.key,
                "type": p.type.value,
                "due_at": _dt(p.due_at),
                "rule": p.rule,
                "reason": p.reason,
                "params": dict(p.params),
            }
            for p in case.plan
        ],
        "closed_at": _dt(case.closed_at),
        "recovered_amount": _money(case.recovered_amount),
        "provider_retrying": case.provider_retrying,
        "provider_gave_up_at": _dt(case.provider_gave_up_at),
        "retry_cap": case.retry_cap,
        "risk_hold": case.risk_hold,
        "customer_acted": case.customer_acted,
        "recovered_by": case.recovered_by,
    }


def vars_of(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def case_from_dict(data: dict[str, Any]) -> RecoveryCase:
    decline = dict(data["decline"])
    decline["lane"] = Lane(decline["lane"])
    amount = _parse_money(data["amount"])
    assert amount is not None
    opened_at = _parse_dt(data["opened_at"])
    assert opened_at is not None
    return RecoveryCase(
        id=data["id"],
        tenant_id=data["tenant_id"],
        invoice_id=data["invoice_id"],
        customer=Customer(**data["customer"]),
        subscription=Subscription(**data["subscription"]),
        amount=amount,
        payment_method=PaymentMethod(**data["payment_method"]),
        policy_name=data["policy_name"],
        opened_at=opened_at,
        decline=DeclineInfo(**decline),
        status=CaseStatus(data["status"]),
        stage=Stage(data["stage"]) if data["stage"] else None,
        access=AccessLevel(data["access"]),
        failures=data["failures"],
        last_failure_at=_parse_dt(data["last_failure_at"]),
        not_before=_parse_dt(data["not_before"]),
        escalated=data["escalated"],
        technical_retries=data["technical_retries"],
        customer_fixed_at=_parse_dt(data["customer_fixed_at"]),
        blocked_credentials=frozenset(data["blocked_credentials"]),
        attempts=tuple(
            Attempt(
                **{
                    **a,
                    "status": AttemptStatus(a["status"]),
                    "started_at": _parse_dt(a["started_at"]),
                    "finished_at": _parse_dt(a["finished_at"]),
                }
            )
            for a in data["attempts"]
        ),
        notices=tuple(
            Notice(
                **{
                    **n,
                    "created_at": _parse_dt(n["created_at"]),
                    "delivered_at": _parse_dt(n["delivered_at"]),
                }
            )
            for n in data["notices"]
        ),
        plan=tuple(
            PlannedAction(
                key=p["key"],
                type=ActionType(p["type"]),
                due_at=_parse_dt(p["due_at"]) or opened_at,
                rule=p["rule"],
                reason=p["reason"],
                params=tuple(sorted(p["params"].items())),
            )
            for p in data["plan"]
        ),
        closed_at=_parse_dt(data["closed_at"]),
        recovered_amount=_parse_money(data["recovered_amount"]),
        # Absent in cases stored before provider-managed retries.
        provider_retrying=data.get("provider_retrying"),
        provider_gave_up_at=_parse_dt(data.get("provider_gave_up_at")),
        # Absent in cases stored before the risk rules.
        retry_cap=data.get("retry_cap"),
        risk_hold=data.get("risk_hold"),
        customer_acted=data.get("customer_acted", False),
        recovered_by=data.get("recovered_by"),
    )
