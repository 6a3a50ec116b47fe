"""Outbound charges end to end: a tenant's own provider account (credentials encrypted in the
database) is what the action runner charges through, with the official SDK, against a
loopback fake of the provider's API. Tenants without an account keep the simulated processor.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from dunwell.bootstrap import Services, build, ensure_tenant
from dunwell.channels.memory import MemoryAccessGate, MemoryNotifier
from dunwell.engine.clock import VirtualClock
from dunwell.providers import accounts
from dunwell.providers.sim import SimulatedProcessor
from dunwell.settings import Settings
from dunwell.store.unit_of_work import UnitOfWork
from factories import API_KEY, failed_body, post, skip_until
from fakes.adyen_api import FakeAdyen
from fakes.braintree_api import FakeBraintree
from fakes.stripe_api import FakeStripe

pytestmark = pytest.mark.integration
SECRET_KEY = "operator-secret-key-0123456789"


@pytest.fixture
def engine(database_url: str, clock: VirtualClock) -> Iterator[Services]:
    # The registry bootstrap builds by default: tenants' accounts first, then the fallback.
    built = build(
        Settings(database_url=database_url, secret_key=SECRET_KEY, sim_psp_url=None),
        clock=clock,
        notifier=MemoryNotifier(),
        access=MemoryAccessGate(),
    )
    ensure_tenant(built, "acme", "Acme", API_KEY, policy="default")
    ensure_tenant(built, "beta", "Beta", "beta-api-key-0123456789", policy="default")
    yield built
    built.close()


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as api:
        yield api


def _add_stripe(engine: Services, api: FakeStripe, tenant: str = "acme") -> None:
    accounts.create(
        engine.sessions,
        SECRET_KEY,
        engine.clock.now(),
        tenant_id=tenant,
        provider="stripe",
        account="main",
        credentials={"api_key": api.api_key},
        config={"api_base": api.url},
        operator=True,
    )


def _case(engine: Services, case_id: str, tenant: str = "acme"):
    with UnitOfWork(engine.sessions) as uow:
        return uow.cases.get(tenant, case_id)


def test_a_failed_stripe_invoice_recovers_through_the_tenants_stripe_account(
    engine, clock, stripe_api
):
    _add_stripe(engine, stripe_api)
    opened = post(engine, failed_body("evt_1", clock.now(), token="pm_card_visa"))
    skip_until(engine, clock, clock.now() + timedelta(days=30))
    case = _case(engine, opened.case_ids[0])
    assert case.status.value == "recovered"
    (attempt,) = case.attempts
    assert attempt.status.value == "succeeded"
    (sent,) = stripe_api.requests
    assert sent["idempotency_key"] == attempt.id
    assert sent["params"]["metadata"] == {"case_id": case.id, "attempt_id": attempt.id}
    assert sent["params"]["customer"] == "cus_1" and sent["params"]["amount"] == "1999"
    assert len(stripe_api.captures) == 1

    with engine.engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT credentials FROM provider_accounts")).one()
    assert stored.startswith("fernet:") and stripe_api.api_key not in stored


def test_a_lost_answer_is_resolved_by_the_lookup_and_charged_once(engine, clock, stripe_api):
    _add_stripe(engine, stripe_api)
    stripe_api.fail_next.append("lost_response")
    opened = post(engine, failed_body("evt_1", clock.now(), token="pm_card_visa"))
    skip_until(engine, clock, clock.now() + timedelta(days=30))
    case = _case(engine, opened.case_ids[0])
    assert case.status.value == "recovered" and len(case.attempts) == 1
    assert case.technical_retries == 0  # resolved at once, no technical retry needed
    assert len(stripe_api.captures) == 1 and len(stripe_api.requests) == 2  # send + replay


def test_sca_moves_the_case_to_the_customer_and_is_not_retried(engine, clock, stripe_api):
    _add_stripe(engine, stripe_api)
    opened = post(engine, failed_body("evt_1", clock.now(), token="pm_authentication_required"))
    skip_until(engine, clock, clock.now() + timedelta(days=10))
    case = _case(engine, opened.case_ids[0])
    assert case.decline.provider_code == "authentication_required"
    assert case.decline.lane.value == "authenticate"
    assert len(stripe_api.requests) == 1 and len(case.attempts) == 1
    assert case.attempts[0].status.value == "failed"


def test_a_decline_carries_the_providers_codes_into_the_case(engine, clock, stripe_api):
    _add_stripe(engine, stripe_api)
    token = "pm_decline_do_not_honor"
    opened = post(engine, failed_body("evt_1", clock.now(), token=token, code="do_not_honor"))
    skip_until(engine, clock, clock.now() + timedelta(days=3))
    case = _case(engine, opened.case_ids[0])
    assert len(case.attempts) >= 1 and case.attempts[0].status.value == "failed"
    # Mastercard advice 03 (do not try again) from the provider's answer stops retries.
    assert case.decline.network_code == "05" and case.decline.advice_code == "03"
    assert stripe_api.captures == []


def test_a_tenant_without_an_account_keeps_the_simulated_processor(engine, clock, stripe_api):
    _add_stripe(engine, stripe_api, tenant="acme")
    fallback = engine.runner.providers.fallback
    assert isinstance(fallback, SimulatedProcessor)
    opened = post(engine, failed_body("evt_1", clock.now(), token="pm_ok_1"), tenant="beta")
    skip_until(engine, clock, clock.now() + timedelta(days=30))
    case = _case(engine, opened.case_ids[0], tenant="beta")
    assert case.status.value == "recovered"
    assert list(fallback.captured) == [case.attempts[0].id]
    assert stripe_api.requests == []


def test_credentials_that_cannot_be_opened_are_not_sent_anywhere_else(
    database_url, clock, stripe_api
):
    services = build(
        Settings(database_url=database_url, secret_key=SECRET_KEY, sim_psp_url=None),
        clock=clock,
        notifier=MemoryNotifier(),
        access=MemoryAccessGate(),
    )
    ensure_tenant(services, "acme", "Acme", API_KEY, policy="default")
    _add_stripe(services, stripe_api)
    services.close()
    # The operator lost the key: the charge errors (technical retry), never the fallback.
    other = build(
        Settings(database_url=database_url, secret_key="another-key-0123456789", sim_psp_url=None),
        clock=clock,
        notifier=MemoryNotifier(),
        access=MemoryAccessGate(),
    )
    try:
        opened = post(other, failed_body("evt_1", clock.now(), token="pm_ok_1"))
        skip_until(other, clock, clock.now() + timedelta(days=30))
        case = _case(other, opened.case_ids[0])
        assert case.attempts and {a.status.value for a in case.attempts} == {"errored"}
        assert case.status.value != "recovered"
        assert list(other.runner.providers.fallback.captured) == []
        assert stripe_api.requests == []
    finally:
        other.close()


@pytest.mark.parametrize("provider", ["adyen", "braintree"])
def test_adyen_and_braintree_accounts_charge_once_through_their_sdks(engine, clock, provider):
    fake: FakeAdyen | FakeBraintree
    with FakeAdyen() if provider == "adyen" else FakeBraintree() as fake:
        if isinstance(fake, FakeAdyen):
            credentials = {"api_key": fake.api_key}
            config = {"merchant_account": fake.merchant_account, "api_base": f"{fake.url}/checkout"}
            token = "adyen:8415000000000001"
        else:
            credentials = {"public_key": fake.public_key, "private_key": fake.private_key}
            config = {"merchant_id": fake.merchant_id, "api_base": fake.url}
            token = "bt_visa"
        accounts.create(
            engine.sessions,
            SECRET_KEY,
            clock.now(),
            tenant_id="acme",
            provider=provider,
            account="main",
            credentials=credentials,
            config=config,
            operator=True,
        )
        fake.fail_next.append("lost_response")  # charged, but the answer never arrives
        body = failed_body("evt_1", clock.now(), token=token, code=None)
        body["payment"]["provider"] = provider
        opened = post(engine, body)
        skip_until(engine, clock, clock.now() + timedelta(days=30))
        case = _case(engine, opened.case_ids[0])
        assert case.status.value == "recovered"
        assert len(case.attempts) == 1 and case.technical_retries == 0  # resolved by lookup
        captured = fake.authorisations if isinstance(fake, FakeAdyen) else fake.settled
        assert len(captured) == 1


def test_rotated_credentials_are_used_from_the_next_charge(engine, clock, stripe_api):
    resolve = engine.runner.providers.accounts
    accounts.create(
        engine.sessions,
        SECRET_KEY,
        clock.now(),
        tenant_id="acme",
        provider="stripe",
        account="main",
        credentials={"api_key": "sk_test_revoked"},
        config={"api_base": stripe_api.url},
        operator=True,
    )
    before = resolve("acme", "stripe")
    assert resolve("acme", "stripe") is before  # built once, kept while unchanged
    _add_stripe(engine, stripe_api)  # same label: the credentials are replaced
    after = resolve("acme", "stripe")
    assert after is not before and resolve("beta", "stripe") is None
    opened = post(engine, failed_body("evt_1", clock.now(), token="pm_card_visa"))
    skip_until(engine, clock, clock.now() + timedelta(days=30))
    assert _case(engine, opened.case_ids[0]).status.value == "recovered"
    assert len(stripe_api.captures) == 1
