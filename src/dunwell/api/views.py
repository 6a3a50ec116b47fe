"""JSON views of cases, timelines and dead letters, as the API returns them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dunwell.domain.case import DeclineInfo, RecoveryCase
from dunwell.store.tables import ActionRow, AuditEntry, DeadLetter


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def case_view(case: RecoveryCase) -> dict[str, Any]:
    nxt = case.next_action
    return {
        "id": case.id,
        "invoice_id": case.invoice_id,
        "status": case.status.value,
        "stage": case.stage.value if case.stage else None,
        "access": case.access.value,
        "policy": case.policy_name,
        "opened_at": _iso(case.opened_at),
        "closed_at": _iso(case.closed_at),
        "amount": {"amount_minor": case.amount.amount_minor, "currency": case.amount.currency},
        "recovered_amount": None
        if case.recovered_amount is None
        else {
            "amount_minor": case.recovered_amount.amount_minor,
            "currency": case.recovered_amount.currency,
        },
        "customer": {
            "id": case.customer.id,
            "country": case.customer.country,
            "timezone": case.customer.timezone,
            "locale": case.customer.locale,
            "segment": case.customer.segment,
        },
        "subscription": {
            "id": case.subscription.id,
            "plan": case.subscription.plan,
            "storefront": case.subscription.storefront,
        },
        "payment_method": {"brand": case.payment_method.brand, "token": case.payment_method.token},
        "decline": decline_view(case.decline),
        "failures": case.failures,
        "escalated": case.escalated,
        "attempts": [
            {
                "id": a.id,
                "number": a.number,
                "status": a.status.value,
                "provider": a.provider,
                "idempotency_key": a.idempotency_key,
                "started_at": _iso(a.started_at),
                "finished_at": _iso(a.finished_at),
                "provider_code": a.provider_code,
            }
            for a in case.attempts
        ],
        "notices": [
            {
                "id": n.id,
                "checkpoint": n.key,
                "template": n.template,
                "channel": n.channel,
                "status": n.status,
                "created_at": _iso(n.created_at),
                "delivered_at": _iso(n.delivered_at),
            }
            for n in case.notices
        ],
        "next_action": None if nxt is None else _planned(nxt),
        "plan": [_planned(p) for p in case.plan],
    }


def decline_view(d: DeclineInfo) -> dict[str, Any]:
    """The latest decline as classified, with the code-table row that decided its lane."""
    source = None
    if d.source_file is not None:
        source = {
            "file": d.source_file,
            "line": d.source_line,
            "code": d.source_code,
            "description": d.source_description,
            "url": d.source_url,
        }
    return {
        "provider": d.code_provider or d.provider,
        "provider_code": d.provider_code,
        "network_code": d.network_code,
        "network_category": d.network_category,
        "advice_code": d.advice_code,
        "message": d.message,
        "lane": d.lane.value,
        "retry_allowed": d.retry_allowed,
        "known": d.known,
        "rule": d.rule,
        "source": source,
    }


def _planned(p: Any) -> dict[str, Any]:
    return {
        "type": p.type.value,
        "key": p.key,
        "due_at": _iso(p.due_at),
        "reason": p.reason,
        "rule": p.rule,
    }


def timeline_view(entries: Sequence[AuditEntry], actions: Sequence[ActionRow]) -> dict[str, Any]:
    return {
        "entries": [
            {
                "seq": e.id,
                "at": _iso(e.at),
                "kind": e.kind,
                "event_id": e.event_id,
                "rule": e.rule,
                "explanation": e.text,
                "data": e.data,
            }
            for e in entries
        ],
        "actions": [
            {
                "key": a.key,
                "type": a.type,
                "status": a.status,
                "due_at": _iso(a.due_at),
                "rule": a.rule,
                "reason": a.reason,
            }
            for a in actions
        ],
    }


def dead_letter_view(row: DeadLetter, with_body: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "source": row.source,
        "status": row.status,
        "received_at": _iso(row.received_at),
        "error": row.error,
        "replayed_at": _iso(row.replayed_at),
        "result": row.result,
    }
    if with_body:
        view["raw_body"] = row.raw_body
    return view
