"""A provider that keeps failing: the circuit opens, attempts are rescheduled, none spent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dunwell.domain.decision import Charge
from dunwell.providers.base import ChargeResult, ProviderError, ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker
from dunwell.store.tables import LedgerRow
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post, skip_until

pytestmark = pytest.mark.integration


class DownProvider:
    """Fails every charge until `up` is set, then approves."""

    name = "down"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.up = False

    def charge(self, charge: Charge) -> ChargeResult:
        self.calls.append(charge.idempotency_key)
        if not self.up:
            raise ProviderError("HTTP 503")
        return ChargeResult(True, provider_reference="ch_1")


def test_an_open_circuit_stops_calls_and_spends_no_attempt(services, clock):
    provider = DownProvider()
    services.runner.providers = ProviderRegistry({}, fallback=provider)
    services.runner.breaker = CircuitBreaker(
        threshold=2, window=timedelta(hours=1), cool_down=timedelta(hours=6)
    )
    ids = [
        post(
            services,
            failed_body(
                f"e{i}",
                clock.now(),
                invoice=f"in_{i}",
                customer=f"c_{i}",
                code="do_not_honor",
                fingerprint=f"fp_{i}",
            ),
        ).case_ids[0]
        for i in range(4)
    ]
    skip_until(services, clock, clock.now() + timedelta(days=2))
    # Two failures open it; then one probe per 6-hour cool-down. Without the circuit, four
    # cases re-sending on the technical backoff would have called it about a hundred times.
    assert 2 < len(provider.calls) <= 2 + 48 // 6
    metrics = services.ingest.metrics.render().decode()
    assert 'dunwell_provider_errors_total{provider="stripe",reason="circuit_open"}' in metrics
    with UnitOfWork(services.sessions) as uow:
        for case_id in ids:
            case = uow.cases.get("acme", case_id)
            assert case.status.value == "open" and case.attempts_made == 0
        ours = uow.session.scalars(select(LedgerRow).where(LedgerRow.attempt_id.is_not(None)))
        assert all(not row.counted for row in ours)  # nothing reached a network

    provider.up = True
    skip_until(services, clock, clock.now() + timedelta(days=2))
    with UnitOfWork(services.sessions) as uow:
        cases = [uow.cases.get("acme", case_id) for case_id in ids]
    assert [c.status.value for c in cases] == ["recovered"] * 4
    # Each case was charged under one idempotency key, the one of its first attempt.
    assert all(len(c.attempts) == 1 for c in cases)
    assert set(provider.calls) == {c.attempts[0].id for c in cases}
