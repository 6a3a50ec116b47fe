"""What a case keeps of its latest decline: decided by the taxonomy in the Context, stored by
the codec, shown by the view, and readable for cases stored before the code tables existed."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from dunwell.api.views import case_view
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context
from dunwell.domain.declines import CodeRow, DeclineTaxonomy
from dunwell.domain.events import (
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.policies import load_policies
from dunwell.store.codec import case_from_dict, case_to_dict

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = load_policies(None)["default"]


def failed(provider: str, code: str, *, network: str | None = None) -> PaymentFailed:
    return PaymentFailed(
        id="evt_1",
        occurred_at=NOW,
        customer=Customer("cus_1", timezone="Europe/Berlin"),
        subscription=Subscription("sub_1"),
        invoice_id="in_1",
        amount=Money(1999, "EUR"),
        provider=provider,
        payment_method=PaymentMethod("pm_1", "visa", "fp_1"),
        decline=DeclineReport(code, network),
    )


def test_the_taxonomy_in_the_context_is_the_one_decide_reads() -> None:
    row = CodeRow(
        table="house_codes",
        line=2,
        code="broke",
        description="Our own gateway's word for no money",
        lane=Lane.RETRY_AFTER_FUNDS,
        network_category="cannot_approve_now",
        source="https://example.com/house-codes",
        label="house code",
    )
    own = DeclineTaxonomy(
        providers=MappingProxyType({"house": (MappingProxyType({"broke": row}),)})
    )
    decision = decide(None, failed("house", "broke"), POLICY, NOW, Context("t", taxonomy=own))
    assert decision.case is not None
    assert decision.case.decline.lane is Lane.RETRY_AFTER_FUNDS
    assert decision.case.decline.source_url == "https://example.com/house-codes"
    # The packaged tables know no provider "house": by default the same code is unknown.
    default = decide(None, failed("house", "broke"), POLICY, NOW, Context("t"))
    assert default.case is not None and default.case.decline.known is False
    assert [e.rule for e in default.explanations][1] == "declines.unknown_code"


def test_the_decline_and_its_source_survive_the_codec_and_reach_the_view() -> None:
    decision = decide(None, failed("adyen", "12", network="51"), POLICY, NOW, Context("t"))
    assert decision.case is not None
    stored = case_from_dict(case_to_dict(decision.case))
    assert stored.decline == decision.case.decline
    view = case_view(stored)["decline"]
    assert view["provider"] == "adyen"
    assert (view["lane"], view["network_category"], view["known"]) == (
        "retry_after_funds",
        "cannot_approve_now",
        True,
    )
    assert view["source"] == {
        "file": "adyen_refusal_reasons.csv",
        "line": view["source"]["line"],
        "code": "12",
        "description": "Not enough balance",
        "url": "https://docs.adyen.com/development-resources/refusal-reasons",
    }


def test_a_case_stored_before_the_code_tables_is_still_readable() -> None:
    decision = decide(None, failed("stripe", "insufficient_funds"), POLICY, NOW, Context("t"))
    assert decision.case is not None
    data = case_to_dict(decision.case)
    old_fields = {
        "provider",
        "provider_code",
        "network_code",
        "advice_code",
        "message",
        "lane",
        "rule",
        "retry_allowed",
    }
    data["decline"] = {k: v for k, v in data["decline"].items() if k in old_fields}
    view = case_view(case_from_dict(data))["decline"]
    assert view["lane"] == "retry_after_funds" and view["provider"] == "stripe"
    assert view["source"] is None and view["network_category"] is None
