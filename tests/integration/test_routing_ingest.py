"""Issue 4 items 5-7 through ingest and the runner, on SQLite and PostgreSQL: provider-managed
retries (a webhook endpoint says the provider retries itself), routing to a backup provider
while the first one's circuit is open, and a card update moving every open invoice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from dunwell.bootstrap import Services, build, ensure_tenant
from dunwell.domain.decision import Charge
from dunwell.domain.routing import ProviderSettings, Route, Routing
from dunwell.providers.base import ChargeResult, ProviderError, ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker
from dunwell.settings import Settings
from dunwell.store.tables import ActionRow, AuditEntry, LedgerRow
from dunwell.store.unit_of_work import UnitOfWork
from dunwell.webhooks import endpoints
from factories import card_updated_body, failed_body, post, skip_until

pytestmark = pytest.mark.integration
API_KEY = "test-key-routing-000000"


class Recording:
    """A provider that records each request (idempotency key) and fails while `down`."""

    def __init__(self, name: str, down: bool = False) -> None:
        self.name, self.down = name, down
        self.calls: list[str] = []

    def charge(self, charge: Charge) -> ChargeResult:
        assert charge.provider == self.name  # the registry routed by Charge.provider
        self.calls.append(charge.idempotency_key)
        if self.down:
            raise ProviderError("HTTP 503")
        return ChargeResult(True, provider_reference=f"{self.name}_{charge.idempotency_key}")


ROUTING = Routing(
    providers=(ProviderSettings("stripe", takeover_after_provider=True),),
    routes=(Route("stripe"), Route("adyen")),
)


@pytest.fixture
def stripe() -> Recording:
    return Recording("stripe")


@pytest.fixture
def adyen() -> Recording:
    return Recording("adyen")


@pytest.fixture
def routed(
    database_url: str, clock: Any, stripe: Recording, adyen: Recording
) -> Iterator[Services]:
    built = build(
        Settings(database_url=database_url),
        clock=clock,
        providers=ProviderRegistry({"stripe": stripe, "adyen": adyen}),
        routing={"acme": ROUTING},
        breaker=CircuitBreaker(
            threshold=2, window=timedelta(hours=1), cool_down=timedelta(hours=6)
        ),
    )
    ensure_tenant(built, "acme", "Acme", API_KEY, policy="default")
    yield built
    built.close()


def _token_card(body: dict[str, Any]) -> dict[str, Any]:
    body["payment"]["payment_method"]["kind"] = "network_token"
    return body


def _actions(services: Services, case_id: str) -> list[ActionRow]:
    with UnitOfWork(services.sessions) as uow:
        return list(uow.session.scalars(select(ActionRow).where(ActionRow.case_id == case_id)))


def _rules(services: Services, case_id: str) -> list[str]:
    with UnitOfWork(services.sessions) as uow:
        return list(
            uow.session.scalars(select(AuditEntry.rule).where(AuditEntry.case_id == case_id))
        )


def test_a_provider_that_retries_itself_is_left_alone_until_it_gives_up(routed, clock, stripe):
    endpoints.create(
        routed.sessions,
        None,
        clock.now(),
        tenant_id="acme",
        provider="stripe",
        secret="whsec_test",
        provider_retries_enabled=True,
    )
    case_id = post(routed, failed_body("f1", clock.now(), token="pm_ok_1")).case_ids[0]
    rows = _actions(routed, case_id)
    assert not [r for r in rows if r.type == "retry"]
    assert {r.type for r in rows} >= {"notice", "access", "end"}
    skip_until(routed, clock, clock.now() + timedelta(days=3))
    assert stripe.calls == []  # nothing charged while Stripe retries
    assert "provider.manages_retries" in _rules(routed, case_id)

    gave_up = {
        "id": "x1",
        "type": "payment.retries_exhausted",
        "occurred_at": clock.now().isoformat(),
        "invoice": {"id": "in_1"},
        "payment": {"provider": "stripe"},
    }
    assert post(routed, gave_up).outcome == "updated"
    skip_until(routed, clock, clock.now() + timedelta(days=10))
    with UnitOfWork(routed.sessions) as uow:
        case = uow.cases.get("acme", case_id)
    assert case is not None and case.status.value == "recovered"
    assert len(stripe.calls) == 1
    assert "provider.gave_up.takeover" in _rules(routed, case_id)


def test_an_open_circuit_sends_due_retries_to_the_backup_and_spends_nothing(
    routed, clock, stripe, adyen
):
    stripe.down = True
    ids = [
        post(
            routed,
            _token_card(
                failed_body(
                    f"e{i}",
                    clock.now(),
                    invoice=f"in_{i}",
                    customer=f"c_{i}",
                    fingerprint=f"fp_{i}",
                    token=f"ntk_ok_{i}",
                )
            ),
        ).case_ids[0]
        for i in range(4)
    ]
    skip_until(routed, clock, clock.now() + timedelta(days=3))
    with UnitOfWork(routed.sessions) as uow:
        cases = {i: uow.cases.get("acme", i) for i in ids}
        counted = uow.session.scalars(
            select(LedgerRow).where(LedgerRow.attempt_id.is_not(None), LedgerRow.counted)
        ).all()
    # Two errors open Stripe's circuit; the other two cases go to Adyen and are recovered.
    recovered = [c for c in cases.values() if c.status.value == "recovered"]
    waiting = [c for c in cases.values() if c.status.value == "open"]
    assert len(recovered) == 2 and len(waiting) == 2
    assert sorted(adyen.calls) == sorted(c.attempts[0].id for c in recovered)
    assert all(c.attempts[0].provider == "adyen" for c in recovered)
    # The two whose outcome at Stripe is unknown stay with Stripe, under their first key.
    assert set(stripe.calls) == {c.attempts[0].id for c in waiting}
    assert all(len(c.attempts) == 1 and c.attempts_made == 0 for c in waiting)
    assert len(counted) == 2  # only the charges that reached a network count
    assert "routing.backup" in _rules(routed, recovered[0].id)

    stripe.down = False
    skip_until(routed, clock, clock.now() + timedelta(days=2))
    with UnitOfWork(routed.sessions) as uow:
        after = [uow.cases.get("acme", c.id) for c in waiting]
    assert [c.status.value for c in after] == ["recovered", "recovered"]
    assert all(len(c.attempts) == 1 for c in after)  # the same attempt, answered at last


def test_a_card_update_moves_every_open_invoice_of_the_customer(services, clock, processor):
    for n in (1, 2):
        post(
            services,
            failed_body(f"f{n}", clock.now(), invoice=f"in_{n}", code="expired_card"),
        )
    clock.advance(timedelta(hours=2))
    result = post(services, card_updated_body("u1", clock.now(), token="pm_ok_new"))
    assert len(result.case_ids) == 2
    for case_id in result.case_ids:
        retries = [r for r in _actions(services, case_id) if r.type == "retry"]
        assert [r.due_at for r in retries] == [clock.now() + timedelta(minutes=5)]
    skip_until(services, clock, clock.now() + timedelta(hours=1))
    with UnitOfWork(services.sessions) as uow:
        cases = [uow.cases.get("acme", i) for i in result.case_ids]
    assert [c.status.value for c in cases] == ["recovered", "recovered"]
    assert sorted(c.invoice_id for c in cases) == ["in_1", "in_2"]
    charged = [processor.captured[c.attempts[0].id] for c in cases]
    assert {c.payment_method.token for c in charged} == {"pm_ok_new"}


def test_adyen_auto_rescue_ending_without_a_rescue_churns_a_case_it_managed(services, clock):
    from dunwell.webhooks.receive import receive
    from webhooks_support import ADYEN_HMAC_KEY, adyen_body, adyen_item

    created = endpoints.create(
        services.sessions,
        None,
        clock.now(),
        tenant_id="acme",
        provider="adyen",
        secret=ADYEN_HMAC_KEY,
        account="AcmeCOM",
        provider_retries_enabled=True,
    )
    endpoint_id = created.endpoint.id
    refused = receive(services, "adyen", endpoint_id, {}, adyen_body(adyen_item()))
    assert refused.status == 200, refused.body
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.by_invoice("acme", "inv_42")
    assert case is not None and case.provider_retrying == "adyen"
    assert not [r for r in _actions(services, case.id) if r.type == "retry"]

    ended = adyen_item(eventCode="AUTORESCUE", success="false", pspReference="PSP0009")
    answer = receive(services, "adyen", endpoint_id, {}, adyen_body(ended))
    assert answer.status == 200, answer.body
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.by_invoice("acme", "inv_42")
    assert case is not None and case.status.value == "churned"
    assert "provider.gave_up.churned" in _rules(services, case.id)
    assert all(r.status != "scheduled" for r in _actions(services, case.id))
