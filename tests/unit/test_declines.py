"""Decline classification: provider code, network code and advice code to a lane."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dunwell.domain.declines import (
    MASTERCARD_RETRY_AFTER,
    STRIPE_DECLINE_CODES,
    UNKNOWN_CODE_LANE,
    VISA_NEVER_RETRY_CODES,
    classify_decline,
)
from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane

pytestmark = pytest.mark.unit


def classify(
    code: str | None = None,
    *,
    network: str | None = None,
    advice: str | None = None,
    brand: str | None = "visa",
):
    return classify_decline(DeclineReport(code, network, advice), brand)


@pytest.mark.parametrize("code", sorted(STRIPE_DECLINE_CODES))
def test_every_stripe_decline_code_resolves_to_a_lane(code: str) -> None:
    found = classify(code)
    assert isinstance(found.lane, Lane)
    assert found.lane is STRIPE_DECLINE_CODES[code]
    assert found.known is True
    assert found.rule == f"stripe decline_code {code}"
    assert found.retry_allowed is (found.lane not in NEVER_RETRY_LANES)
    assert found.retry_after is None


def test_the_stripe_table_never_sends_a_decline_to_the_provider_error_lane() -> None:
    # provider_error is for the PSP failing, which is not a decline at all.
    assert Lane.PROVIDER_ERROR not in set(STRIPE_DECLINE_CODES.values())


@pytest.mark.parametrize(
    ("code", "lane"),
    [
        ("insufficient_funds", Lane.RETRY_AFTER_FUNDS),
        ("expired_card", Lane.UPDATE_PAYMENT_METHOD),
        ("authentication_required", Lane.AUTHENTICATE),
        ("fraudulent", Lane.FRAUD_SUSPECTED),
        ("do_not_honor", Lane.RETRY_SOON),
        ("stolen_card", Lane.DO_NOT_RETRY),
    ],
)
def test_well_known_codes_go_to_their_lane(code: str, lane: Lane) -> None:
    assert classify(code).lane is lane


def test_fraud_is_never_retried() -> None:
    found = classify("fraudulent")
    assert found.retry_allowed is False


def test_codes_are_matched_case_and_whitespace_insensitively() -> None:
    assert classify("  Insufficient_Funds ").lane is Lane.RETRY_AFTER_FUNDS
    assert classify("do_not_honor", network=" r0 ", brand="VISA").lane is Lane.DO_NOT_RETRY


@pytest.mark.parametrize("advice", ["03", "21"])
@pytest.mark.parametrize("code", ["insufficient_funds", "do_not_honor", "generic_decline", None])
@pytest.mark.parametrize("brand", ["mastercard", "visa", None])
def test_mastercard_never_retry_advice_overrides_a_soft_provider_code(
    advice: str, code: str | None, brand: str | None
) -> None:
    found = classify(code, advice=advice, brand=brand)
    assert found.lane is Lane.DO_NOT_RETRY
    assert found.retry_allowed is False
    assert found.rule == f"mastercard advice code {advice}"


@pytest.mark.parametrize(
    ("advice", "delay"),
    [
        ("24", timedelta(hours=1)),
        ("25", timedelta(hours=24)),
        ("26", timedelta(days=2)),
        ("27", timedelta(days=4)),
        ("28", timedelta(days=6)),
        ("29", timedelta(days=8)),
        ("30", timedelta(days=10)),
    ],
)
def test_mastercard_retry_after_advice_gives_the_documented_delay(
    advice: str, delay: timedelta
) -> None:
    found = classify("insufficient_funds", advice=advice, brand="mastercard")
    assert found.retry_after == delay
    assert found.lane is Lane.RETRY_AFTER_FUNDS  # the provider's lane stands, only delayed
    assert found.retry_allowed is True
    assert f"mastercard advice code {advice}" in found.rule
    assert "not before" in found.explain()


def test_the_advice_table_is_exactly_codes_24_to_30() -> None:
    assert sorted(MASTERCARD_RETRY_AFTER) == [str(n) for n in range(24, 31)]


def test_a_retry_after_advice_does_not_make_a_never_lane_retryable() -> None:
    found = classify("stolen_card", advice="25", brand="mastercard")
    assert found.lane is Lane.DO_NOT_RETRY
    assert found.retry_allowed is False


def test_mastercard_advice_01_asks_for_new_account_information() -> None:
    found = classify("do_not_honor", advice="01", brand="mastercard")
    assert found.lane is Lane.UPDATE_PAYMENT_METHOD
    assert found.retry_allowed is True
    assert found.rule == "mastercard advice code 01"


def test_mastercard_advice_01_does_not_soften_fraud() -> None:
    found = classify("fraudulent", advice="01", brand="mastercard")
    assert found.lane is Lane.FRAUD_SUSPECTED
    assert found.retry_allowed is False


@pytest.mark.parametrize(
    "code", sorted(c for c, lane in STRIPE_DECLINE_CODES.items() if lane in NEVER_RETRY_LANES)
)
def test_mastercard_advice_01_never_softens_a_never_retry_provider_code(code: str) -> None:
    # A "never" from either side wins: a stolen card with advice 01 must not become retryable.
    found = classify(code, advice="01", brand="mastercard")
    assert found.lane in NEVER_RETRY_LANES
    assert found.retry_allowed is False


@pytest.mark.parametrize("network", sorted(VISA_NEVER_RETRY_CODES))
def test_visa_category_1_codes_force_do_not_retry_for_visa(network: str) -> None:
    found = classify("insufficient_funds", network=network, brand="visa")
    assert found.lane is Lane.DO_NOT_RETRY
    assert found.retry_allowed is False
    assert found.rule == f"visa category 1 code {network}"


@pytest.mark.parametrize("brand", ["mastercard", "amex", None])
@pytest.mark.parametrize("network", ["04", "R0"])
def test_visa_category_1_codes_mean_nothing_for_other_brands(
    network: str, brand: str | None
) -> None:
    found = classify("insufficient_funds", network=network, brand=brand)
    assert found.lane is Lane.RETRY_AFTER_FUNDS
    assert found.retry_allowed is True


def test_a_visa_network_code_outside_category_1_does_not_block() -> None:
    assert classify("do_not_honor", network="05", brand="visa").lane is Lane.RETRY_SOON


@pytest.mark.parametrize("code", ["something_new_from_stripe", "", None])
def test_an_unknown_code_gets_the_conservative_lane_and_is_flagged_unknown(
    code: str | None,
) -> None:
    found = classify(code)
    assert found.lane is UNKNOWN_CODE_LANE is Lane.RETRY_SOON
    assert found.known is False
    assert found.retry_allowed is True
    assert found.rule.startswith("unknown code")


def test_an_unknown_code_still_honours_a_retry_after_advice() -> None:
    found = classify("brand_new_code", advice="27", brand="mastercard")
    assert found.known is False
    assert found.retry_after == timedelta(days=4)
