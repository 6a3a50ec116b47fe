"""The per-provider circuit breaker, on explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dunwell.providers.circuit import CircuitBreaker

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_it_opens_after_the_threshold_of_failures_within_the_window() -> None:
    breaker = CircuitBreaker(threshold=3, window=60 * S, cool_down=30 * S)
    for i in range(2):
        breaker.record("stripe", False, T0 + i * S)
    assert breaker.allow("stripe", T0 + 3 * S)
    breaker.record("stripe", False, T0 + 3 * S)
    assert not breaker.allow("stripe", T0 + 4 * S)
    assert breaker.allow("adyen", T0 + 4 * S)  # one circuit per provider


def test_failures_spread_wider_than_the_window_do_not_open_it() -> None:
    breaker = CircuitBreaker(threshold=3, window=60 * S)
    for i in range(5):
        breaker.record("stripe", False, T0 + i * 61 * S)
    assert breaker.allow("stripe", T0 + 300 * S)


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_it() -> None:
    breaker = CircuitBreaker(threshold=1, cool_down=30 * S)
    breaker.record("stripe", False, T0)
    assert not breaker.allow("stripe", T0 + 29 * S)
    assert breaker.allow("stripe", T0 + 31 * S)  # the probe
    assert not breaker.allow("stripe", T0 + 31 * S)  # only one at a time
    breaker.record("stripe", True, T0 + 32 * S)
    assert breaker.allow("stripe", T0 + 33 * S) and breaker.allow("stripe", T0 + 33 * S)


def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    breaker = CircuitBreaker(threshold=1, cool_down=30 * S)
    breaker.record("stripe", False, T0)
    assert breaker.allow("stripe", T0 + 31 * S)
    breaker.record("stripe", False, T0 + 32 * S)
    assert breaker.is_open("stripe", T0 + 61 * S)
    assert breaker.allow("stripe", T0 + 63 * S)
