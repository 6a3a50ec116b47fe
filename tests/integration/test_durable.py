"""Durable execution on DBOS: schedules survive a restart and run on time; a killed worker
loses nothing and charges nothing twice (SQLite, one process killed and restarted)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dbos import DBOS
from sqlalchemy import select, text

from dunwell.bootstrap import Services, build, ensure_tenant
from dunwell.channels.memory import MemoryAccessGate, MemoryNotifier
from dunwell.domain.decision import Charge
from dunwell.engine import durable
from dunwell.engine.clock import VirtualClock
from dunwell.engine.event_schema import parse_event
from dunwell.providers.base import ChargeResult, ProviderRegistry
from dunwell.providers.sim import SimulatedProcessor
from dunwell.settings import Settings
from dunwell.store.database import make_engine
from dunwell.store.tables import ActionRow
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dbos_schema(database_url: str) -> Iterator[str]:
    schema = f"dbos_test_{uuid.uuid4().hex[:8]}"
    yield schema
    if database_url.startswith("postgresql"):
        engine = make_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def _build(url: str, clock: VirtualClock, processor: SimulatedProcessor) -> Services:
    services = build(
        Settings(database_url=url),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
        notifier=MemoryNotifier(),
        access=MemoryAccessGate(),
    )
    ensure_tenant(services, "acme", "Acme", None, policy="default")
    return services


def _boot(url: str, clock: VirtualClock, schema: str) -> Services:
    services = _build(url, clock, SimulatedProcessor())
    durable.start(services, executor_id="month-worker", system_schema=schema)
    return services


def _drained(services: Services) -> bool:
    now = services.clock.now()
    with UnitOfWork(services.sessions) as uow:
        busy = uow.session.scalars(
            select(ActionRow.id)
            .where(
                (ActionRow.status == "running")
                | ((ActionRow.status == "scheduled") & (ActionRow.due_at <= now))
            )
            .limit(1)
        ).first()
    return busy is None and not DBOS.list_queued_workflows()


def _run_due(services: Services, timeout: float = 30) -> None:
    durable.tick_now()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _drained(services):
            return
        time.sleep(0.05)
    raise AssertionError("due actions were not carried out in time")


def test_restart_mid_month_resumes_every_schedule_on_time(
    database_url: str, clock: VirtualClock, dbos_schema: str
) -> None:
    services = _boot(database_url, clock, dbos_schema)
    start = clock.now()
    try:
        codes = ["insufficient_funds", "do_not_honor", "expired_card", "try_again_later"]
        for i in range(8):
            # Cards that keep declining: the schedules run their whole month.
            body = failed_body(
                f"evt_{i}",
                clock.now(),
                invoice=f"in_{i}",
                customer=f"cus_{i}",
                fingerprint=f"fp_{i}",
                token=f"decline_{codes[i % 4]}",
                code=codes[i % 4],
            )
            event, payload = parse_event(json.dumps(body))
            services.ingest("acme", event, payload)

        restarted_at = None
        while True:
            with UnitOfWork(services.sessions) as uow:
                next_due = uow.actions.next_due_at()
            if next_due is None or next_due > start + timedelta(days=31):
                break
            clock.set(max(next_due, clock.now()))
            if restarted_at is None and clock.now() >= start + timedelta(days=12):
                # The process stops mid-month; a new one starts under the same executor id.
                durable.stop()
                services.close()
                services = _boot(database_url, clock, dbos_schema)
                restarted_at = clock.now()
            _run_due(services)

        assert restarted_at is not None
        with UnitOfWork(services.sessions) as uow:
            rows = uow.session.scalars(select(ActionRow)).all()
        done = [r for r in rows if r.status == "done"]
        retries_after_restart = [r for r in done if r.type == "retry" and r.due_at >= restarted_at]
        assert len(done) >= 20
        assert retries_after_restart, "the schedules went on after the restart"
        # On time: every action ran at the virtual moment it fell due, through DBOS.
        late = [(r.key, r.due_at, r.updated_at) for r in done if r.updated_at != r.due_at]
        assert late == []
        assert all(r.workflow_id for r in done)
    finally:
        durable.stop()
        services.close()


def test_killed_worker_loses_nothing_and_charges_nothing_twice_on_sqlite() -> None:
    """The chaos check itself, small: one SQLite worker SIGKILLed mid-flight and restarted."""
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "checks" / "chaos.py"),
            *("--database", "sqlite", "--cases", "300", "--kills", "2"),
            *("--kill-every", "0.8", "--latency-ms", "30", "--timeout", "120"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["duplicate_captures"] == 0
    assert result["lost_actions"] == 0
    assert result["kills_with_work_due"] >= 1, result
    assert result["captures"] > 0
    assert result["captures"] == result["recovered_cases"]


class RecordingProcessor(SimulatedProcessor):
    """The in-process simulated processor, noting when each charge reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def charge(self, charge: Charge) -> ChargeResult:
        self.times.append(time.monotonic())
        return super().charge(charge)


def test_a_provider_rate_limit_spaces_the_charges(
    database_url: str, clock: VirtualClock, dbos_schema: str
) -> None:
    processor = RecordingProcessor()
    services = _build(database_url, clock, processor)
    for i in range(20):
        # Three days old: the first retry of every case is due now.
        body = failed_body(
            f"evt_{i}",
            clock.now() - timedelta(days=3),
            invoice=f"in_{i}",
            customer=f"cus_{i}",
            fingerprint=f"fp_{i}",
            code="try_again_later",
        )
        event, payload = parse_event(json.dumps(body))
        services.ingest("acme", event, payload)
    options = durable.DispatchOptions(rate_limits={"stripe": (4, 1.0)})
    durable.start(
        services,
        executor_id="rate-limited",
        system_schema=dbos_schema,
        options=options,
        providers=frozenset({"stripe"}),
    )
    try:
        _run_due(services, timeout=60)
    finally:
        durable.stop()
        services.close()
    assert len(processor.times) == 20
    # 20 charges at 4 per second: the limiter spaces the batches' starts over 4 s or more;
    # a charge follows its start by the time its decision takes (well under a second). Without
    # the limit, eight batches in flight finish them in a fraction of a second.
    assert max(processor.times) - min(processor.times) >= 2.5


class FlakyProcessor(SimulatedProcessor):
    """Breaks once in a way no adapter should (not a ProviderError): the step fails and DBOS
    ends the workflow in an error."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def charge(self, charge: Charge) -> ChargeResult:
        if self.broken:
            self.broken = False
            raise RuntimeError("adapter bug")
        return super().charge(charge)


def test_a_batch_whose_workflow_failed_is_handed_to_a_fresh_one(
    database_url: str, clock: VirtualClock, dbos_schema: str
) -> None:
    processor = FlakyProcessor()
    services = _build(database_url, clock, processor)
    body = failed_body("evt_1", clock.now() - timedelta(days=3), code="try_again_later")
    event, payload = parse_event(json.dumps(body))
    case_id = services.ingest("acme", event, payload).case_ids[0]
    options = durable.DispatchOptions(redispatch_after=timedelta(0))
    durable.start(services, executor_id="flaky", system_schema=dbos_schema, options=options)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            clock.advance(timedelta(seconds=1))  # the hand-off's age is in virtual time
            durable.tick_now()
            with UnitOfWork(services.sessions) as uow:
                case = uow.cases.get("acme", case_id)
            if case is not None and case.status.value == "recovered":
                break
            time.sleep(0.3)
        metrics = services.ingest.metrics.render().decode()
    finally:
        durable.stop()
        services.close()
    assert case is not None and case.status.value == "recovered"
    assert 'dunwell_workflows_redispatched_total{reason="failed"} 1.0' in metrics
