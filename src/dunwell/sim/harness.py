"""The harness: one policy at a time, the same world, through the real engine.

Each run gets a fresh temporary SQLite database built by the real Alembic migrations, the
real `build` composition root, real ingest and the real action runner; only the clock is
virtual and the provider and notifier are the world. Time jumps from one thing that can
happen to the next: a customer's own event, or an action the engine scheduled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dunwell.bootstrap import Services, build, ensure_tenant
from dunwell.channels.memory import MemoryAccessGate
from dunwell.domain.case import CaseStatus
from dunwell.providers.base import ProviderRegistry
from dunwell.settings import Settings
from dunwell.sim.log import Kind, Outcome
from dunwell.sim.population import CURRENCY, DEFAULT_START
from dunwell.sim.violations import count_violations
from dunwell.sim.world import BuiltinWorld
from dunwell.store.migrate import upgrade
from dunwell.store.unit_of_work import UnitOfWork

TENANT = "sim"
_API_KEY = "dw_simulation_only_not_a_secret"  # the tenant needs one; nobody calls the API
DEFAULT_POLICIES = ("default", "baseline-fixed")


class SimulationStalled(RuntimeError):
    """Virtual time stopped moving: an action stays due that the runner does not take."""


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    cases: int
    by_status: dict[str, int]  # every CaseStatus, zero or not
    recovered_minor: int
    failed_minor: int
    attempts: int  # charges the world received, provider failures included
    provider_errors: int
    notices: int
    access_changes: int
    violations: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        s = self.by_status
        return {
            "cases": self.cases,
            "recovered": s["recovered"],
            "churned": s["churned"],
            "other": {k: s[k] for k in ("canceled", "written_off", "disputed")},
            "open": s["open"],
            "recovered_amount": {"amount_minor": self.recovered_minor, "currency": CURRENCY},
            "failed_amount": {"amount_minor": self.failed_minor, "currency": CURRENCY},
            "attempts": self.attempts,
            "provider_errors": self.provider_errors,
            "notices": self.notices,
            "access_changes": self.access_changes,
            "guardrail_violations": {"total": sum(self.violations.values()), **self.violations},
        }


def run_policy(world_factory: Callable[[], BuiltinWorld], policy_name: str) -> PolicyResult:
    world = world_factory()  # fresh per policy: the world keeps state as the run goes
    gate = MemoryAccessGate()
    with tempfile.TemporaryDirectory(prefix="dunwell-sim-") as folder:
        url = f"sqlite:///{Path(folder) / 'sim.db'}"
        upgrade(url)
        services = build(
            Settings(database_url=url, default_policy=policy_name),
            clock=world.clock,
            providers=ProviderRegistry({}, fallback=world),
            notifier=world,
            access=gate,
        )
        try:
            ensure_tenant(services, TENANT, "Simulation", api_key=_API_KEY, policy=policy_name)
            _run(services, world)
            with UnitOfWork(services.sessions) as uow:
                cases = uow.cases.list(TENANT, limit=len(world.profiles) * 10 + 100)
        finally:
            services.close()  # release the SQLite file before the folder goes
    by_status = {status.value: 0 for status in CaseStatus}
    for case in cases:
        by_status[case.status.value] += 1
    charges = [e for e in world.log if e.kind is Kind.CHARGE]
    return PolicyResult(
        policy=policy_name,
        cases=len(cases),
        by_status=by_status,
        recovered_minor=sum(
            c.recovered_amount.amount_minor
            for c in cases
            if c.status is CaseStatus.RECOVERED and c.recovered_amount is not None
        ),
        failed_minor=sum(c.amount.amount_minor for c in cases),
        attempts=len(charges),
        provider_errors=sum(1 for e in charges if e.outcome is Outcome.ERROR),
        notices=len(world.notices),
        access_changes=len(gate.changes),
        violations=count_violations(world.log),
    )


def _run(services: Services, world: BuiltinWorld) -> None:
    """The event loop: jump to the next thing due, ingest the world, run due actions."""
    clock, horizon = world.clock, world.horizon
    last: datetime | None = None
    while True:
        with UnitOfWork(services.sessions) as uow:
            action_at = uow.actions.next_due_at()
        due = [t for t in (world.next_event_at(), action_at) if t is not None and t <= horizon]
        if not due:
            return
        at = max(min(due), clock.now())  # an action due in the past runs now
        if at == last and world.next_event_at() != at:
            raise SimulationStalled(f"an action due at {at.isoformat()} is never taken")
        last = at
        clock.set(at)
        for event in world.pop_due(at):
            services.ingest(TENANT, event)
        services.runner.run_until_idle()


def simulate(
    customers: int,
    days: int,
    seed: int,
    policies: Sequence[str] = DEFAULT_POLICIES,
    start: datetime = DEFAULT_START,
) -> dict[str, Any]:
    """Every policy on the same population; the result is plain JSON-able data."""

    def world() -> BuiltinWorld:
        return BuiltinWorld(customers, days, seed, start)

    results = {name: run_policy(world, name).as_dict() for name in policies}
    return {
        "parameters": {
            "customers": customers,
            "days": days,
            "seed": seed,
            "start": start.isoformat(),
            "currency": CURRENCY,
            "policies": list(policies),
        },
        "policies": results,
    }
