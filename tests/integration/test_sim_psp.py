"""The simulated processor over real HTTP, and the engine charging through it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from dunwell.domain.decision import Charge
from dunwell.domain.events import PaymentMethod
from dunwell.domain.money import Money
from dunwell.providers.base import ProviderError, ProviderRegistry
from dunwell.providers.sim_http import HttpSimProvider
from factories import failed_body, post, skip_until

pytestmark = pytest.mark.integration
DUNWELL = str(Path(sys.executable).with_name("dunwell"))


def _start_psp(tmp_path: Path, *args: str) -> Iterator[str]:
    from e2e_support import free_port

    port = free_port()
    log = tmp_path / "psp.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [DUNWELL, "sim", "psp", "--port", str(port), "--db", str(tmp_path / "psp.db"), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz")
            break
        except httpx.TransportError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the sim psp did not start"
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def psp(tmp_path: Path) -> Iterator[str]:
    yield from _start_psp(tmp_path)


@pytest.fixture
def flaky_psp(tmp_path: Path) -> Iterator[str]:
    yield from _start_psp(tmp_path, "--error-rate", "1.0", "--seed", "7")


@pytest.fixture
def adapter(psp: str) -> Iterator[HttpSimProvider]:
    client = HttpSimProvider(psp)
    yield client
    client.close()


def _charge(key: str, token: str = "pm_ok", amount: int = 1999) -> Charge:
    return Charge(
        "case_1",
        key,
        key,
        Money(amount, "EUR"),
        "stripe",
        PaymentMethod(token, "visa", "fp"),
        "cus_1",
        "in_1",
    )


def test_the_same_key_gets_the_same_answer_and_captures_once(psp, adapter):
    first = adapter.charge(_charge("att_1"))
    second = adapter.charge(_charge("att_1"))
    assert first.approved and second == first
    with pytest.raises(ProviderError, match="400"):
        adapter.charge(_charge("att_1", amount=2500))  # same key, other parameters
    ledger = httpx.get(f"{psp}/charges").json()
    assert [c["idempotency_key"] for c in ledger["captures"]] == ["att_1"]
    assert [r["outcome"] for r in ledger["requests"]] == [
        "succeeded",
        "replayed",
        "idempotency_mismatch",
    ]


def test_a_decline_is_data_with_its_codes(psp, adapter):
    result = adapter.charge(_charge("att_2", token="pm_decline_do_not_honor_advice_24"))
    assert not result.approved
    assert (result.decline.provider_code, result.decline.advice_code) == ("do_not_honor", "24")
    assert httpx.get(f"{psp}/charges").json()["captures"] == []


def test_an_unknown_outcome_resolves_by_resending_the_same_key_without_a_second_capture(
    flaky_psp,
):
    adapter = HttpSimProvider(flaky_psp)
    errors = 0
    result = None
    for _ in range(50):
        try:
            result = adapter.charge(_charge("att_3"))
            break
        except ProviderError:
            errors += 1
    adapter.close()
    assert result is not None and result.approved and errors >= 1
    ledger = httpx.get(f"{flaky_psp}/charges").json()
    assert len(ledger["captures"]) == 1
    assert "injected_error_after" in {r["outcome"] for r in ledger["requests"]}


def test_the_engine_charges_through_the_psp_with_the_attempt_id_as_key(
    psp, adapter, services, clock
):
    services.runner.providers = ProviderRegistry({}, fallback=adapter)
    opened = post(services, failed_body("evt_1", clock.now(), token="pm_ok_1"))
    skip_until(services, clock, clock.now() + timedelta(days=10))
    from dunwell.store.unit_of_work import UnitOfWork

    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", opened.case_ids[0])
    assert case.status.value == "recovered"
    captures = httpx.get(f"{psp}/charges").json()["captures"]
    assert [c["idempotency_key"] for c in captures] == [case.attempts[0].id]
