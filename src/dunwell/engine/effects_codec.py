"""Effects as JSON, so a decided effect survives in its action row until it is carried out."""

from __future__ import annotations

from typing import Any

from dunwell.domain.decision import ChangeAccess, Charge, Effect, Escalate, SendNotice
from dunwell.domain.events import Customer, PaymentMethod
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel
from dunwell.store.codec import vars_of


def effect_to_dict(effect: Effect) -> dict[str, Any]:
    data = vars_of(effect)
    if isinstance(effect, Charge):
        data["amount"] = {"amount": effect.amount.amount_minor, "currency": effect.amount.currency}
        data["payment_method"] = vars_of(effect.payment_method)
        return {"kind": "charge", **data}
    if isinstance(effect, SendNotice):
        data["amount"] = {"amount": effect.amount.amount_minor, "currency": effect.amount.currency}
        data["customer"] = vars_of(effect.customer)
        return {"kind": "notice", **data}
    if isinstance(effect, ChangeAccess):
        return {"kind": "access", **data, "level": effect.level.value}
    return {"kind": "escalate", **data}


def effect_from_dict(data: dict[str, Any]) -> Effect:
    fields = {k: v for k, v in data.items() if k != "kind"}
    kind = data["kind"]
    if kind == "charge":
        fields["amount"] = Money(fields["amount"]["amount"], fields["amount"]["currency"])
        fields["payment_method"] = PaymentMethod(**fields["payment_method"])
        return Charge(**fields)
    if kind == "notice":
        fields["amount"] = Money(fields["amount"]["amount"], fields["amount"]["currency"])
        fields["customer"] = Customer(**fields["customer"])
        return SendNotice(**fields)
    if kind == "access":
        return ChangeAccess(**{**fields, "level": AccessLevel(fields["level"])})
    if kind == "escalate":
        return Escalate(**fields)
    raise ValueError(f"unknown effect kind {kind!r}")
