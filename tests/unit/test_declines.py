"""Decline classification: provider code, network code and advice code to a lane, through the
shipped code tables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dunwell.domain.declines import UNKNOWN_CODE_LANE, Classification, classify_decline
from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane
from dunwell.providers.taxonomy import builtin_taxonomy

pytestmark = pytest.mark.unit

TAXONOMY = builtin_taxonomy()
STRIPE_DECLINE_CODES = {
    row.code: row.lane for row in TAXONOMY.rows() if row.table == "stripe_decline_codes"
}
VISA_CATEGORY_1 = sorted(
    row.code
    for row in TAXONOMY.rows()
    if row.table == "visa_decline_categories"
    if row.get("category") == "1"
)


def classify(
    code: str | None = None,
    *,
    network: str | None = None,
    advice: str | None = None,
    brand: str | None = "visa",
    provider: str | None = "stripe",
) -> Classification:
    report = DeclineReport(code, network, advice, provider=provider)
    return classify_decline(report, brand, TAXONOMY)


def test_the_stripe_table_has_every_code_the_engine_started_with() -> None:
    # The hard-coded table this file replaced had 47 codes; none may silently disappear.
    assert len(STRIPE_DECLINE_CODES) == 47


@pytest.mark.parametrize("code", sorted(STRIPE_DECLINE_CODES))
def test_every_stripe_decline_code_resolves_to_a_lane(code: str) -> None:
    found = classify(code)
    assert found.lane is STRIPE_DECLINE_CODES[code]
    assert found.known is True
    assert found.rule == f"stripe decline_code {code}"
    assert found.retry_allowed is (found.lane not in NEVER_RETRY_LANES)
    assert found.retry_after is None
    assert found.source is not None and found.source.file == "stripe_decline_codes.csv"
    assert found.source.source == "https://docs.stripe.com/declines/codes"


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


def test_a_stripe_error_code_is_found_when_it_is_not_a_decline_code() -> None:
    found = classify("card_declined")
    assert (found.lane, found.rule) == (Lane.RETRY_SOON, "stripe error code card_declined")
    assert found.source is not None and found.source.source == "https://docs.stripe.com/error-codes"
    assert classify("rate_limit").lane is Lane.PROVIDER_ERROR


def test_a_code_in_both_stripe_tables_is_read_from_the_decline_codes_first() -> None:
    found = classify("expired_card")
    assert found.source is not None and found.source.table == "stripe_decline_codes"


def test_fraud_is_never_retried() -> None:
    assert classify("fraudulent").retry_allowed is False


def test_codes_are_matched_case_and_whitespace_insensitively() -> None:
    assert classify("  Insufficient_Funds ").lane is Lane.RETRY_AFTER_FUNDS
    assert classify("do_not_honor", network=" r0 ", brand="VISA").lane is Lane.DO_NOT_RETRY
    assert classify("do_not_honor", provider=" Stripe ").known is True


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
    assert found.source is not None and found.source.file == "mastercard_advice_codes.csv"


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


def test_the_wait_advice_codes_are_exactly_24_to_30() -> None:
    waits = sorted(r.code for r in TAXONOMY.advice.values() if r.get("effect") == "wait")
    assert waits == [str(n) for n in range(24, 31)]


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


def test_an_informational_advice_code_changes_nothing() -> None:
    found = classify("insufficient_funds", advice="02", brand="mastercard")
    assert (found.lane, found.retry_after) == (Lane.RETRY_AFTER_FUNDS, None)


def test_visa_category_1_is_exactly_the_twelve_never_approve_codes() -> None:
    assert VISA_CATEGORY_1 == sorted(
        ["04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"]
    )


@pytest.mark.parametrize("network", VISA_CATEGORY_1)
def test_visa_category_1_codes_force_do_not_retry_for_visa(network: str) -> None:
    found = classify("insufficient_funds", network=network, brand="visa")
    assert found.lane is Lane.DO_NOT_RETRY
    assert found.retry_allowed is False
    assert found.rule == f"visa category 1 code {network}"
    assert found.network_category == "never_approve"


@pytest.mark.parametrize("brand", ["mastercard", "amex", None])
@pytest.mark.parametrize("network", ["04", "R0"])
def test_visa_category_1_codes_mean_nothing_for_other_brands(
    network: str, brand: str | None
) -> None:
    found = classify("insufficient_funds", network=network, brand=brand)
    assert found.lane is Lane.RETRY_AFTER_FUNDS
    assert found.retry_allowed is True


def test_a_visa_network_code_outside_category_1_does_not_block() -> None:
    found = classify("do_not_honor", network="05", brand="visa")
    assert found.lane is Lane.RETRY_SOON
    assert found.network_category == "generic"


def test_a_single_digit_network_code_is_the_two_digit_one() -> None:
    # Adyen's raw responses come "with or without a leading zero".
    assert classify("do_not_honor", network="4", brand="visa").lane is Lane.DO_NOT_RETRY
    assert classify(None, network="05 : Do not honor", provider="checkout").known is True


@pytest.mark.parametrize("code", ["something_new_from_stripe", "", None])
def test_an_unknown_code_gets_the_conservative_lane_and_is_flagged_unknown(
    code: str | None,
) -> None:
    found = classify(code)
    assert found.lane is UNKNOWN_CODE_LANE is Lane.RETRY_SOON
    assert found.known is False
    assert found.retry_allowed is True
    assert found.rule.startswith("unknown code")
    assert found.source is None


def test_an_unknown_code_still_honours_a_retry_after_advice() -> None:
    found = classify("brand_new_code", advice="27", brand="mastercard")
    assert found.known is False
    assert found.retry_after == timedelta(days=4)


def test_an_unknown_provider_code_falls_back_to_the_network_code() -> None:
    found = classify("something_new", network="51", brand="mastercard")
    assert (found.lane, found.known) == (Lane.RETRY_AFTER_FUNDS, True)
    assert found.rule == "iso 8583 response code 51"
    assert found.source is not None and found.source.file == "iso8583_response_codes.csv"


def test_a_provider_without_a_table_is_classified_by_the_network_code_or_is_unknown() -> None:
    assert classify("20051", network="51", provider="checkout").lane is Lane.RETRY_AFTER_FUNDS
    unknown = classify("20051", provider="checkout")
    assert unknown.known is False
    assert "no code table for provider 'checkout'" in unknown.rule


def test_the_provider_code_wins_over_a_softer_or_harsher_network_code() -> None:
    # Step 3 before step 4: the provider's specific word, then the generic ISO one.
    found = classify("expired_card", network="05", brand="mastercard")
    assert found.lane is Lane.UPDATE_PAYMENT_METHOD


def test_the_same_code_means_different_things_for_different_providers() -> None:
    # "12" is Adyen's "Not enough balance"; for Braintree it is no code at all.
    assert classify("12", provider="adyen").lane is Lane.RETRY_AFTER_FUNDS
    assert classify("12", provider="braintree").known is False


def test_the_simulator_speaks_stripes_codes() -> None:
    found = classify("insufficient_funds", provider="sim")
    assert found.lane is Lane.RETRY_AFTER_FUNDS
    assert found.provider == "sim"  # as reported; only the lookup goes to Stripe's table


@pytest.mark.parametrize("brand", ["Visa", "VISA ", "visadebit"])
def test_any_spelling_of_visa_is_held_to_visas_category_1(brand: str) -> None:
    assert classify("do_not_honor", network="43", brand=brand).lane is Lane.DO_NOT_RETRY


def test_the_classification_carries_every_input_and_the_network_category() -> None:
    found = classify("2001", network="51", advice=None, brand="visa", provider="braintree")
    assert (found.provider, found.provider_code, found.network_code) == (
        "braintree",
        "2001",
        "51",
    )
    assert found.network_category == "cannot_approve_now"
    assert "braintree_processor_responses.csv line" in found.explain()


def test_a_providers_text_matches_whatever_its_dashes_and_quotes() -> None:
    lost = classify("Processor Declined \u2013 Possible Lost Card", provider="braintree")
    assert (lost.lane, lost.known) == (Lane.DO_NOT_RETRY, True)
    limit = classify("Cardholder\u2019s Activity Limit Exceeded", provider="braintree")
    assert limit.lane is Lane.RETRY_AFTER_FUNDS


def test_without_a_taxonomy_the_packaged_tables_are_used() -> None:
    # Callers written before the tables (two arguments) keep working, with the same answer.
    found = classify_decline(DeclineReport("2001", provider="braintree"), "visa")
    assert found == classify("2001", provider="braintree")
    assert found.lane is Lane.RETRY_AFTER_FUNDS


def test_a_report_naming_no_provider_is_read_as_stripes_as_before_the_tables() -> None:
    assert classify("insufficient_funds", provider=None).lane is Lane.RETRY_AFTER_FUNDS
    assert classify("12", provider=None).known is False  # not Adyen's "Not enough balance"
