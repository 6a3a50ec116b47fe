"""The code tables as data: every row resolves to its lane with its source, the same real-world
failure lands in the same lane whichever provider reports it, and a bad table is refused."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from dunwell.domain.declines import CodeRow, classify_decline
from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane
from dunwell.providers import taxonomy as tx

pytestmark = pytest.mark.unit

TAXONOMY = tx.builtin_taxonomy()
ROWS = TAXONOMY.rows()
CODES_DIR = Path(tx.__file__).parent / "codes"
PROVIDER_OF = {
    spec.table: provider for provider, specs in tx.PROVIDER_TABLES.items() for spec in specs
}


def _id(row: CodeRow) -> str:
    return f"{row.table}:{row.code}"


def classify(
    code: str | None,
    provider: str | None,
    *,
    network: str | None = None,
    advice: str | None = None,
    brand: str | None = None,
):  # type: ignore[no-untyped-def]
    report = DeclineReport(code, network, advice, provider=provider)
    return classify_decline(report, brand, TAXONOMY)


def test_every_shipped_file_is_loaded_and_none_is_empty() -> None:
    on_disk = sorted(p.stem for p in CODES_DIR.glob("*.csv"))
    assert on_disk == sorted(spec.table for spec in tx.ALL_TABLES)
    for spec in tx.ALL_TABLES:
        assert any(row.table == spec.table for row in ROWS), spec.table


def test_the_tables_are_as_thorough_as_their_sources() -> None:
    def codes(table: str) -> set[str]:
        return {r.code for r in ROWS if r.table == table}

    braintree = codes("braintree_processor_responses")
    assert {str(n) for n in range(2000, 2109)} <= braintree
    assert "3000" in braintree
    # Adyen skips 13 and 30; 43-45 are not in the versions of its page checked so far.
    adyen = {str(n) for n in range(2, 47) if n not in (13, 30, 43, 44, 45)}
    assert adyen <= codes("adyen_refusal_reasons")
    assert {"05", "14", "51", "54", "57", "59", "91", "96"} <= codes("iso8583_response_codes")
    assert {r.get("category") for r in ROWS if r.table == "visa_decline_categories"} == {
        "1",
        "2",
        "3",
    }  # category 4 is "every other code": it has no list of its own


@pytest.mark.parametrize("row", [r for r in ROWS if r.table in PROVIDER_OF], ids=_id)
def test_every_provider_row_resolves_to_its_lane_with_its_source(row: CodeRow) -> None:
    found = classify(row.code, PROVIDER_OF[row.table])
    assert found.lane is row.lane
    assert found.known is True
    assert found.retry_allowed is (row.lane not in NEVER_RETRY_LANES)
    assert found.source is not None
    assert found.source.source.startswith("https://")
    assert found.network_category == found.source.network_category
    if found.source != row:
        # Only a code Stripe lists as both a decline code and an error code is answered by
        # another row, the more specific decline code, and the loader made sure they agree.
        assert (found.source.table, row.table) == ("stripe_decline_codes", "stripe_error_codes")
        assert found.source.code == row.code


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r.table in ("adyen_refusal_reasons", "braintree_processor_responses")],
)
def test_adyen_and_braintree_rows_are_found_by_their_text_as_well(row: CodeRow) -> None:
    provider = PROVIDER_OF[row.table]
    assert classify(row.description.upper(), provider).source == row
    assert classify(f"{row.code}: {row.description}", provider).source == row


@pytest.mark.parametrize("row", [r for r in ROWS if r.table == "iso8583_response_codes"], ids=_id)
def test_every_network_row_resolves_to_its_lane_with_its_source(row: CodeRow) -> None:
    found = classify(None, "a_provider_without_a_table", network=row.code, brand="mastercard")
    assert (found.lane, found.source, found.known) == (row.lane, row, True)
    assert found.network_category == row.network_category


@pytest.mark.parametrize("row", [r for r in ROWS if r.table == "visa_decline_categories"], ids=_id)
def test_every_visa_row_resolves_with_its_category(row: CodeRow) -> None:
    found = classify("do_not_honor", "stripe", network=row.code, brand="visa")
    iso = TAXONOMY.network_row(row.code)
    assert iso is not None, "every Visa code is an ISO 8583 code too"
    assert row.network_category == found.network_category
    if row.get("category") == "1":
        assert (found.lane, found.source, found.retry_allowed) == (Lane.DO_NOT_RETRY, row, False)
    else:
        # Categories 2 and 3 allow retries: the provider's word stands, and the Visa file
        # agrees with the ISO file about the lane.
        assert found.lane is Lane.RETRY_SOON
        assert row.lane is iso.lane


@pytest.mark.parametrize("row", list(TAXONOMY.advice.values()), ids=_id)
def test_every_mastercard_advice_row_has_its_effect(row: CodeRow) -> None:
    found = classify("insufficient_funds", "stripe", advice=row.code, brand="mastercard")
    effect = row.get("effect")
    if effect == "never_retry":
        assert (found.lane, found.source) == (Lane.DO_NOT_RETRY, row)
    elif effect == "update_payment_method":
        assert (found.lane, found.source) == (Lane.UPDATE_PAYMENT_METHOD, row)
    elif effect == "wait":
        assert found.lane is Lane.RETRY_AFTER_FUNDS
        assert found.retry_after == timedelta(hours=int(row.get("retry_after_hours") or 0))
    else:
        assert (found.lane, found.retry_after) == (Lane.RETRY_AFTER_FUNDS, None)


# The same failure as each provider words it, and as the issuer's ISO 8583 response code.
SAME_FAILURE = {
    "insufficient funds": (
        Lane.RETRY_AFTER_FUNDS,
        "insufficient_funds",
        "12",
        "2001",
        "51",
    ),
    "withdrawal limit": (
        Lane.RETRY_AFTER_FUNDS,
        "withdrawal_count_limit_exceeded",
        "29",
        "2003",
        "65",
    ),
    "expired card": (Lane.UPDATE_PAYMENT_METHOD, "expired_card", "6", "2004", "54"),
    "invalid card number": (Lane.UPDATE_PAYMENT_METHOD, "incorrect_number", "8", "2005", "14"),
    "wrong cvc": (Lane.UPDATE_PAYMENT_METHOD, "incorrect_cvc", "24", "2010", "N7"),
    "incorrect pin": (Lane.UPDATE_PAYMENT_METHOD, "incorrect_pin", "17", "2102", "55"),
    "pin tries exceeded": (Lane.UPDATE_PAYMENT_METHOD, "pin_try_exceeded", "18", "2103", "75"),
    "card not supported": (Lane.UPDATE_PAYMENT_METHOD, "card_not_supported", "10", "2024", None),
    "stolen card": (Lane.DO_NOT_RETRY, "stolen_card", "5", "2013", "43"),
    "lost card": (Lane.DO_NOT_RETRY, "lost_card", "5", "2012", "41"),
    "pick up card": (Lane.DO_NOT_RETRY, "pickup_card", "5", "2047", "04"),
    "transaction not permitted": (Lane.DO_NOT_RETRY, "transaction_not_allowed", "23", "2015", "57"),
    "restricted card": (Lane.DO_NOT_RETRY, "restricted_card", "25", "2057", "62"),
    "authorisation revoked": (Lane.DO_NOT_RETRY, "revocation_of_authorization", "26", "2017", "R1"),
    "invalid amount": (Lane.DO_NOT_RETRY, "invalid_amount", "7", "2048", "13"),
    "do not honor": (Lane.RETRY_SOON, "do_not_honor", "2", "2000", "05"),
    "call issuer": (Lane.RETRY_SOON, "call_issuer", "3", "2044", "01"),
    "issuer unavailable": (Lane.RETRY_SOON, "issuer_not_available", "9", "3000", "91"),
    "processing error": (Lane.RETRY_SOON, "processing_error", "4", "2038", "96"),
    "sca required": (Lane.AUTHENTICATE, "authentication_required", "38", "2099", "1A"),
    "issuer suspects fraud": (Lane.FRAUD_SUSPECTED, "fraudulent", "31", "2014", "59"),
}


@pytest.mark.parametrize("failure", sorted(SAME_FAILURE))
def test_the_same_failure_lands_in_the_same_lane_whoever_reports_it(failure: str) -> None:
    lane, stripe, adyen, braintree, iso = SAME_FAILURE[failure]
    seen = {
        "stripe": classify(stripe, "stripe"),
        "adyen": classify(adyen, "adyen"),
        "braintree": classify(braintree, "braintree"),
    }
    if iso is not None:
        seen["iso 8583"] = classify(None, "no_table", network=iso, brand="mastercard")
    assert {name: found.lane for name, found in seen.items()} == dict.fromkeys(seen, lane)
    assert all(found.known and found.source is not None for found in seen.values())


@pytest.mark.parametrize("provider_code", [("stripe", "do_not_honor"), ("adyen", "Refused")])
@pytest.mark.parametrize(("advice", "network"), [("03", None), ("21", None), (None, "R0")])
def test_a_network_never_retry_overrides_any_providers_softer_word(
    provider_code: tuple[str, str], advice: str | None, network: str | None
) -> None:
    provider, code = provider_code
    found = classify(code, provider, network=network, advice=advice, brand="visa")
    assert (found.lane, found.retry_allowed) == (Lane.DO_NOT_RETRY, False)
    assert found.source is not None and found.source.table in (
        "mastercard_advice_codes",
        "visa_decline_categories",
    )


def test_braintree_soft_and_hard_are_kept_as_braintree_says() -> None:
    rows = {r.code: r for r in ROWS if r.table == "braintree_processor_responses"}
    assert rows["2001"].get("soft_hard") == "soft"
    assert rows["2004"].get("soft_hard") == "hard"
    # Nothing Braintree calls hard is sent to be retried for money that may come.
    hard = [r for r in rows.values() if r.get("soft_hard") == "hard"]
    assert all(r.lane is not Lane.RETRY_AFTER_FUNDS for r in hard)


# --- the loader refuses bad tables ---------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "codes"
    shutil.copytree(CODES_DIR, target)
    return target


def _append(directory: Path, name: str, line: str) -> None:
    with (directory / name).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def test_a_copy_of_the_shipped_tables_loads_to_the_same_taxonomy(tmp_path: Path) -> None:
    assert tx.load_directory(_copy(tmp_path)).rows() == ROWS


@pytest.mark.parametrize(
    ("name", "line", "problem"),
    [
        (
            "stripe_decline_codes.csv",
            "new_code,A new code,retry_whenever,generic,https://docs.stripe.com/declines/codes",
            "unknown lane 'retry_whenever'",
        ),
        (
            "stripe_decline_codes.csv",
            "new_code,A new code,retry_soon,generic,",
            "source must be a public https URL",
        ),
        (
            "stripe_decline_codes.csv",
            "Insufficient_Funds,Again,retry_soon,generic,https://docs.stripe.com/declines/codes",
            "'insufficient_funds' is already listed on line",
        ),
        (
            "adyen_refusal_reasons.csv",
            "99,Not Enough Balance,retry_soon,generic,https://docs.adyen.com/x",
            "'not enough balance' is already listed on line",
        ),
        (
            "iso8583_response_codes.csv",
            "5,Do not honour again,retry_soon,generic,https://docs.stripe.com/x",
            "'05' is already listed on line",
        ),
        (
            "braintree_processor_responses.csv",
            "2999,Something,maybe,retry_soon,generic,https://developer.paypal.com/x",
            "soft_hard must be soft or hard",
        ),
        (
            "stripe_error_codes.csv",
            "expired_card,Disagrees,retry_soon,generic,https://docs.stripe.com/error-codes",
            "'expired_card' is already listed",  # and a lane disagreement with the decline table
        ),
        (
            "visa_decline_categories.csv",
            "99,5,Nothing,retry_soon,true,https://www.checkout.com/x",
            "Visa category must be 1-4",
        ),
        (
            "mastercard_advice_codes.csv",
            "31,Retry some day,wait,,,https://docs.everonet.com/x",
            "a wait needs retry_after_hours",
        ),
        (
            "mastercard_advice_codes.csv",
            "32,Never,never_retry,retry_soon,,https://docs.everonet.com/x",
            "effect never_retry goes with lane do_not_retry",
        ),
        (
            "iso8583_response_codes.csv",
            "Q9,Odd,retry_soon,sometimes,https://docs.stripe.com/x",
            "network_category must be one of",
        ),
    ],
)
def test_a_bad_row_is_refused_with_its_file_and_line(
    tmp_path: Path, name: str, line: str, problem: str
) -> None:
    directory = _copy(tmp_path)
    _append(directory, name, line)
    with pytest.raises(tx.TaxonomyError) as raised:
        tx.load_directory(directory)
    assert any(problem in p and p.startswith(name) for p in raised.value.problems), (
        raised.value.problems
    )


def test_a_code_two_stripe_tables_disagree_on_is_refused(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    path = directory / "stripe_error_codes.csv"
    text = path.read_text(encoding="utf-8").replace(
        "expired_card,The card has expired,update_payment_method",
        "expired_card,The card has expired,retry_soon",
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(tx.TaxonomyError) as raised:
        tx.load_directory(directory)
    assert any("'expired_card' is update_payment_method" in p for p in raised.value.problems)


def test_a_missing_file_or_column_is_refused(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "adyen_refusal_reasons.csv").unlink()
    path = directory / "iso8583_response_codes.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",source", ",url", 1), "utf-8")
    with pytest.raises(tx.TaxonomyError) as raised:
        tx.load_directory(directory)
    text = str(raised.value)
    assert "adyen_refusal_reasons.csv: cannot read" in text
    assert "iso8583_response_codes.csv: missing columns source" in text


def test_a_report_classified_again_gets_the_same_answer_on_each_taxonomy() -> None:
    report = DeclineReport("insufficient_funds", "51", None, provider="stripe")
    first = classify_decline(report, "visa", TAXONOMY)
    assert classify_decline(report, "visa", TAXONOMY) == first
    # Another brand or another set of tables is a question of its own.
    fresh = tx.load_directory(CODES_DIR)
    assert fresh == TAXONOMY  # the remembered answers are no part of a taxonomy's value
    assert classify_decline(report, "visa", fresh) == first
    never = DeclineReport("do_not_honor", "R0", None, provider="stripe")
    assert classify_decline(never, "visa", fresh) == classify_decline(never, "visa", TAXONOMY)
    assert classify_decline(report, "mastercard", TAXONOMY).lane == first.lane
