"""Money (integer minor units, ISO currency) and policy durations (30m, 6h, 3d, 2w)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dunwell.domain.durations import format_duration, parse_duration
from dunwell.domain.money import Money

pytestmark = pytest.mark.unit


# --- Money ------------------------------------------------------------------------------------


def test_money_keeps_integer_minor_units_and_the_currency() -> None:
    price = Money(1999, "EUR")
    assert price.amount_minor == 1999
    assert price.currency == "EUR"
    assert str(price) == "EUR 19.99"


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(5, "USD"), "USD 0.05"),
        (Money(-1050, "GBP"), "GBP -10.50"),
        (Money(500, "JPY"), "JPY 500"),
        (Money(1234, "KWD"), "KWD 1.234"),
    ],
)
def test_money_prints_in_major_units_with_the_currencys_exponent(money: Money, text: str) -> None:
    assert str(money) == text


def test_money_is_immutable() -> None:
    price = Money(100, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        price.amount_minor = 200  # type: ignore[misc]


@pytest.mark.parametrize("amount", [19.99, 1.0, Decimal("19.99"), "1999", None])
def test_money_rejects_anything_but_an_int_amount(amount: object) -> None:
    with pytest.raises(TypeError, match="amount_minor must be an int"):
        Money(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [True, False])
def test_money_rejects_a_bool_even_though_bool_is_an_int(amount: bool) -> None:
    with pytest.raises(TypeError, match="got bool"):
        Money(amount, "USD")


@pytest.mark.parametrize(
    "currency", ["usd", "US", "USDT", "", "U5D", " USD", "USD ", "USD\n", "€UR"]
)
def test_money_rejects_a_currency_that_is_not_three_capital_letters(currency: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, currency)


def test_money_accepts_negative_and_zero_amounts() -> None:
    # Refunds and credits are money too; the type only guards the representation.
    assert Money(0, "JPY").amount_minor == 0
    assert Money(-500, "GBP").amount_minor == -500


def test_adding_money_of_the_same_currency_adds_the_minor_units() -> None:
    assert Money(1999, "USD") + Money(1, "USD") == Money(2000, "USD")


def test_adding_money_of_different_currencies_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot combine USD with EUR"):
        Money(100, "USD") + Money(100, "EUR")


@settings(max_examples=25, deadline=None, database=None)
@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_money_addition_is_exact_integer_addition(a: int, b: int) -> None:
    assert (Money(a, "CHF") + Money(b, "CHF")).amount_minor == a + b


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("0m", timedelta(0)),
        (" 5 h ", timedelta(hours=5)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_duration_reads_the_policy_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["3x", "", "d", "1.5h", "-1d", "3D", "1h30m", "3", "3 days", "PT3H", "3s"]
)
def test_parse_duration_rejects_anything_else_with_a_helpful_message(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like 30m, 6h, 3d or 2w"):
        parse_duration(text)


def test_parse_duration_rejects_a_bare_number_from_yaml() -> None:
    # YAML reads `retries: [3]` as an int: it must not silently become something.
    with pytest.raises(ValueError):
        parse_duration(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=6), "6h"),
        (timedelta(days=3), "3d"),
        (timedelta(days=14), "14d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=36), "36h"),
        (timedelta(seconds=45), "45s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_uses_the_largest_unit_that_divides_evenly(
    delta: timedelta, text: str
) -> None:
    assert format_duration(delta) == text


@settings(max_examples=25, deadline=None, database=None)
@given(st.integers(1, 10_000), st.sampled_from("mhdw"))
def test_a_formatted_duration_parses_back_to_the_same_length(value: int, unit: str) -> None:
    delta = parse_duration(f"{value}{unit}")
    assert parse_duration(format_duration(delta)) == delta
