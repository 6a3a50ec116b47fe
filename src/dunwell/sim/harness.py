"""The harness: one policy at a time, the same world, through the real engine.

Each run gets a fresh temporary SQLite database built by the real Alembic migrations, the
real `build` composition root, real ingest and the real action runner; only the clock is
virtual, and the provider and notifier are adapters over the world (`adapters`). Time jumps
from one thing that can happen to the next: a world's own event, or an action the engine
scheduled. The harness sees the world only through the `World` protocol (`_View` enforces
it), and keeps its own record of what reached the networks for the violations check.
"""

from __future__ import annotations

import gc
import multiprocessing
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dunwell.bootstrap import MemoryServices, Services, build, build_in_memory, ensure_tenant
from dunwell.channels.memory import MemoryAccessGate
from dunwell.domain.case import CaseStatus, RecoveryCase
from dunwell.domain.events import ExternalEvent
from dunwell.domain.routing import Routing
from dunwell.domain.scoring import RetryScorer
from dunwell.engine.clock import VirtualClock
from dunwell.providers.base import ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker
from dunwell.scoring.features import history_from_sim
from dunwell.scoring.history import HistoryRow
from dunwell.settings import Settings
from dunwell.sim.adapters import Recorder, WorldNotifier, WorldProvider
from dunwell.sim.loading import DEFAULT_WORLD, load_world_factory
from dunwell.sim.log import Kind, Outcome
from dunwell.sim.population import CURRENCY, DEFAULT_START
from dunwell.sim.protocol import (
    ChargeOutcome,
    ChargeRequest,
    NoticeOutcome,
    NoticeRequest,
    OracleBound,
    World,
    WorldFactory,
)
from dunwell.sim.violations import count_violations
from dunwell.store.migrate import upgrade

if TYPE_CHECKING:
    from dunwell.scoring.model import LearnedScorer

TENANT = "sim"
_API_KEY = "dw_simulation_only_not_a_secret"  # the tenant needs one; nobody calls the API
DEFAULT_POLICIES = ("default", "baseline-fixed")
TRAIN_POLICY = "baseline-fixed"  # what gathers history in a training period
# Where the engine keeps its state during a run: `memory` (store/memory.py, the default) or a
# fresh `sqlite` file per run, migrated like a deployment's. The JSON is the same, byte for
# byte (tests/integration/test_simulate.py); memory is faster.
STORES = ("memory", "sqlite")
DEFAULT_STORE = "memory"


class SimulationStalled(RuntimeError):
    """Virtual time stopped moving: an action stays due that the runner does not take."""


class _View:
    """A world as the harness and the engine may see it: the protocol's members, no more.

    Whatever else a world object carries (profiles, balances, paydays) is out of reach here,
    so no code path of the engine can learn from it, even by accident.
    """

    __slots__ = ("_world",)

    def __init__(self, world: World) -> None:
        self._world = world

    @property
    def start(self) -> datetime:
        return self._world.start

    @property
    def horizon(self) -> datetime:
        return self._world.horizon

    def next_event_at(self) -> datetime | None:
        return self._world.next_event_at()

    def events_due(self, at: datetime) -> list[ExternalEvent]:
        return self._world.events_due(at)

    def charge(self, request: ChargeRequest, at: datetime) -> ChargeOutcome:
        return self._world.charge(request, at)

    def deliver(self, notice: NoticeRequest, at: datetime) -> NoticeOutcome:
        return self._world.deliver(notice, at)

    def oracle(self) -> OracleBound | None:
        raise RuntimeError("the oracle is for the report, after the run, not for the engine")


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    cases: int
    by_status: dict[str, int]  # every CaseStatus, zero or not
    recovered_minor: int
    failed_minor: int
    attempts: int  # charges the world received, provider failures and re-sends included
    network_attempts: int  # charges that reached the card networks
    provider_errors: int
    notices: int
    caused_events: int  # customer actions the world said notices caused
    access_changes: int
    hours_to_recovery: tuple[float, ...]
    violations: dict[str, int]
    oracle: OracleBound | None
    currency: str = CURRENCY
    recovered_customers: frozenset[str] = frozenset()  # for tests; not in the JSON
    # Cumulative recovered amount (minor units) at the end of each virtual day of the run.
    recovered_by_day: tuple[int, ...] = ()
    history: tuple[HistoryRow, ...] = ()  # the attempts as a deployment saw them; not in JSON

    def as_dict(self) -> dict[str, Any]:
        s, cases = self.by_status, self.cases
        median = statistics.median(self.hours_to_recovery) if self.hours_to_recovery else None
        return {
            "cases": cases,
            "recovered": s["recovered"],
            "churned": s["churned"],
            "other": {k: s[k] for k in ("canceled", "written_off", "disputed")},
            "open": s["open"],
            "recovered_amount": {"amount_minor": self.recovered_minor, "currency": self.currency},
            "failed_amount": {"amount_minor": self.failed_minor, "currency": self.currency},
            "recovery_rate": {
                "by_count": _ratio(s["recovered"], cases),
                "by_amount": _ratio(self.recovered_minor, self.failed_minor),
            },
            "attempts": self.attempts,
            "network_attempts": self.network_attempts,
            "attempts_per_case": _ratio(self.network_attempts, cases),
            "provider_errors": self.provider_errors,
            "notices": self.notices,
            "notices_per_case": _ratio(self.notices, cases),
            "customer_actions_after_notices": self.caused_events,
            "access_changes": self.access_changes,
            "median_hours_to_recovery": None if median is None else round(median, 2),
            # Ended unrecovered by the policy's own end, not by the customer's choice.
            "involuntary_churn": {"count": s["churned"], "rate": _ratio(s["churned"], cases)},
            "guardrail_violations": {"total": sum(self.violations.values()), **self.violations},
            "share_of_oracle": _oracle_share(self),
            "recovered_by_day": list(self.recovered_by_day),
        }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _oracle_share(r: PolicyResult) -> dict[str, float] | None:
    if r.oracle is None:
        return None
    return {
        "by_count": _ratio(r.by_status["recovered"], r.oracle.recoverable),
        "by_amount": _ratio(r.recovered_minor, r.oracle.recoverable_minor),
    }


def run_policy(
    world_factory: Callable[[], World],
    policy_name: str,
    scorer: RetryScorer | None = None,
    store: str = DEFAULT_STORE,
    *,
    history: bool = True,
    keep: list[object] | None = None,
    oracle_elsewhere: bool = False,
) -> PolicyResult:
    """One policy through the engine on a fresh world. `history`: also turn the attempts into
    the rows a model trains on (`PolicyResult.history`; a training period needs them, the
    report does not). `keep`: where to leave the run's state (the world, the store) instead
    of freeing it on return; for a process that ends right after (`_run_job`).
    `oracle_elsewhere`: the caller asks a fresh world for the oracle (`fixed_oracle`), so a
    world that has a fixed one is not asked here (the result's `oracle` is None)."""
    with _fewer_collections():
        return _run_policy(
            world_factory, policy_name, scorer, store, history, keep, oracle_elsewhere
        )


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """No cyclic garbage collection while a run goes, then as before.

    A run keeps millions of objects alive (the store keeps every case, row and ledger entry)
    and makes next to no cyclic garbage: a full collection after a 20,000-customer run finds
    about ten objects, and the peak memory is the same with or without collections. The
    collector still examined every object the store kept, once young and again in the middle
    generation: 10-15% of a run at its default pace, still 7% with passes every 50,000
    allocations. Reference counting frees everything else as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_policy(
    world_factory: Callable[[], World],
    policy_name: str,
    scorer: RetryScorer | None,
    store: str,
    history: bool,
    keep: list[object] | None = None,
    oracle_elsewhere: bool = False,
) -> PolicyResult:
    world = world_factory()  # fresh per policy: the world keeps state as the run goes
    view = _View(world)
    clock = VirtualClock(view.start)
    recorder = Recorder()
    gate = MemoryAccessGate()
    provider = WorldProvider(view, clock, recorder)
    # A world with several providers says which can charge what (optional attribute).
    routing = getattr(world, "routing", None)
    parts: dict[str, Any] = dict(
        clock=clock,
        providers=ProviderRegistry({}, fallback=provider),
        notifier=WorldNotifier(view, clock, recorder),
        access=gate,
        routing={TENANT: routing} if isinstance(routing, Routing) else None,
        breaker=sim_breaker(),
        scorer=scorer,
    )
    if store == "memory":
        services = build_in_memory(Settings(default_policy=policy_name), **parts)
        services.policies.get(policy_name)
        services.store.add_tenant(TENANT, services.settings.visa_rule, {"": policy_name})
        cases = _run_to_end(services, view, clock, recorder)
        if keep is not None:
            keep.append(services)
    elif store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dunwell-sim-") as folder:
            url = f"sqlite:///{Path(folder) / 'sim.db'}"
            upgrade(url)
            sql = build(Settings(database_url=url, default_policy=policy_name), **parts)
            try:
                ensure_tenant(sql, TENANT, "Simulation", api_key=_API_KEY, policy=policy_name)
                cases = _run_to_end(sql, view, clock, recorder)
            finally:
                sql.close()  # release the SQLite file before the folder goes
    else:
        raise ValueError(f"unknown store {store!r} (have: {', '.join(STORES)})")
    if keep is not None:
        keep.extend((world, recorder, cases))
    bound = None if oracle_elsewhere and has_fixed_oracle(world) else world.oracle()
    result = _result(policy_name, cases, recorder, len(gate.changes), bound)
    days = max(1, -(-int((view.horizon - view.start).total_seconds()) // 86400))
    curve = [0] * days
    for case in cases:
        if case.status is CaseStatus.RECOVERED and case.closed_at and case.recovered_amount:
            day = min(days - 1, int((case.closed_at - view.start).total_seconds() // 86400))
            curve[day] += case.recovered_amount.amount_minor
    running = 0
    for day in range(days):
        running += curve[day]
        curve[day] = running
    return replace(
        result,
        recovered_by_day=tuple(curve),
        history=tuple(history_from_sim(recorder.log, cases)) if history else (),
    )


def sim_breaker() -> CircuitBreaker:
    """The circuit breaker for simulated volumes: a few hundred customers send a few charges
    an hour, so the production default (5 failures within a minute) would never trip during
    an outage. Three failures within an hour open it for half an hour."""
    return CircuitBreaker(threshold=3, window=timedelta(hours=1), cool_down=timedelta(minutes=30))


def has_fixed_oracle(world: object) -> bool:
    """Whether the world says its oracle depends only on how it was built (its seed and
    arguments), not on the run (optional attribute `fixed_oracle`, docs/simulation.md)."""
    return getattr(world, "fixed_oracle", False) is True


def fixed_oracle(fresh: Callable[[], World]) -> OracleBound | None:
    """The oracle of a fresh world that has a fixed one (never run, so never asked while the
    engine runs); None for a world whose oracle needs its run."""
    world = fresh()
    return world.oracle() if has_fixed_oracle(world) else None


def _result(
    policy_name: str,
    cases: list[RecoveryCase],
    recorder: Recorder,
    access_changes: int,
    oracle: OracleBound | None,
) -> PolicyResult:
    by_status = {status.value: 0 for status in CaseStatus}
    for case in cases:
        by_status[case.status.value] += 1
    recovered = [c for c in cases if c.status is CaseStatus.RECOVERED]
    charges = [e for e in recorder.log if e.kind is Kind.CHARGE]
    # A re-send of one attempt (same id) after a provider error is one network attempt.
    reached = {e.attempt_id for e in charges if e.reached_network}
    return PolicyResult(
        policy=policy_name,
        cases=len(cases),
        by_status=by_status,
        recovered_minor=sum(
            c.recovered_amount.amount_minor for c in recovered if c.recovered_amount is not None
        ),
        failed_minor=sum(c.amount.amount_minor for c in cases),
        attempts=len(charges),
        network_attempts=len(reached),
        provider_errors=sum(1 for e in charges if e.outcome is Outcome.ERROR),
        notices=len(recorder.notices),
        caused_events=recorder.caused,
        access_changes=access_changes,
        hours_to_recovery=tuple(
            (c.closed_at - c.opened_at).total_seconds() / 3600
            for c in recovered
            if c.closed_at is not None
        ),
        violations=count_violations(recorder.log),
        oracle=oracle,
        currency=cases[0].amount.currency if cases else CURRENCY,  # a world bills in one
        recovered_customers=frozenset(c.customer.id for c in recovered),
    )


def _run_to_end(
    services: Services | MemoryServices, world: _View, clock: VirtualClock, recorder: Recorder
) -> list[RecoveryCase]:
    """Run the world through the engine; the cases as the store has them at the end."""
    _run(services, world, clock, recorder)
    with services.unit() as uow:
        return uow.cases.list(TENANT, limit=recorder.failures * 2 + 100)


def _run(
    services: Services | MemoryServices, world: _View, clock: VirtualClock, recorder: Recorder
) -> None:
    """The event loop: jump to the next thing due, ingest the world, run due actions."""
    horizon = world.horizon
    last: datetime | None = None
    while True:
        with services.unit() as uow:
            action_at = uow.actions.next_due_at()
        due = [t for t in (world.next_event_at(), action_at) if t is not None and t <= horizon]
        if not due:
            return
        at = max(min(due), clock.now())  # an action due in the past runs now
        if at == last and world.next_event_at() != at:
            raise SimulationStalled(f"an action due at {at.isoformat()} is never taken")
        last = at
        clock.set(at)
        for event in world.events_due(at):
            recorder.event(event)
            services.ingest(TENANT, event)
        services.runner.run_until_idle()


def simulate(
    customers: int,
    days: int,
    seed: int,
    policies: Sequence[str] = DEFAULT_POLICIES,
    start: datetime = DEFAULT_START,
    world: str | WorldFactory = DEFAULT_WORLD,
    train_days: int = 0,
    train_policy: str = TRAIN_POLICY,
    model_dir: Path | None = None,
    train_customers: int | None = None,
    store: str = DEFAULT_STORE,
    workers: int = 1,
) -> dict[str, Any]:
    """Every policy on the same world; the result is plain JSON-able data.

    With `train_days`, a training period comes first: `train_policy` runs on a world of
    other customers (another seed) over the `train_days` before `start`; a model is trained on
    the attempts the harness saw there (saved in `model_dir` if given), and every policy then
    runs the evaluation period with it. Policies without `align: learned` ignore it.
    `store`: where the engine keeps its state (`STORES`); `workers`: how many policies run at
    once, each in its own process (`run_arms`). Neither changes the JSON, only the speed."""
    factory = load_world_factory(world) if isinstance(world, str) else world

    def fresh() -> World:
        return factory(seed=seed, customers=customers, days=days, start=start)

    scorer, training = None, None
    if train_days > 0:
        scorer, training = train_period(
            factory, train_customers or customers, train_days, seed, start, train_policy, store
        )
        if model_dir is not None:
            from dunwell.scoring.store import ModelStore

            training["saved_as"] = ModelStore(model_dir).save(scorer, training.pop("manifest"))
        else:
            training.pop("manifest")
    runs = run_arms(fresh, policies, scorer, store, workers)
    oracle = next((r.oracle for r in runs.values() if r.oracle is not None), None)
    extra: dict[str, Any] = {} if training is None else {"training": training}
    return {
        **extra,
        "parameters": {
            "customers": customers,
            "days": days,
            "seed": seed,
            "start": start.isoformat(),
            "currency": next((r.currency for r in runs.values()), CURRENCY),
            "policies": list(policies),
            "world": world if isinstance(world, str) else _name(world),
            "train_days": train_days,
        },
        "oracle": None if oracle is None else oracle.as_dict(),
        "policies": {name: r.as_dict() for name, r in runs.items()},
    }


# The jobs a pool of forked workers runs, by index (the arms, then the oracle): a forked
# child inherits them, so nothing (a world factory, a trained model) has to be pickled on
# the way in. Each takes `keep`, where to leave its state (`_KEPT`).
_JOBS: list[Callable[[list[object]], object]] = []


def run_arms(
    fresh: Callable[[], World],
    policies: Sequence[str],
    scorer: RetryScorer | None,
    store: str,
    workers: int,
) -> dict[str, PolicyResult]:
    """Every policy's run, `workers` of them at once (each in a forked process).

    The runs share nothing: each gets a fresh world from the factory (the protocol asks for
    one per call) and its own store, so a run's result does not depend on where it ran, and
    they come back in the order of `policies`. Customers are not split across processes:
    the engine's circuit breaker is shared by every customer of a run (one customer's
    provider errors hold everyone's retries), so a run cannot be cut in pieces and give the
    same bytes."""
    # The report needs no training rows: not built (about 1% of a run at 100,000 customers).
    if workers <= 1 or len(policies) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: run_policy(fresh, name, scorer, store, history=False) for name in policies}
    # In parallel, a world with a fixed oracle is asked for it once, by a job of its own
    # queued after the arms: it runs on the worker that finishes its arm first, while the
    # slowest arm still runs, instead of at the end of every arm (4 s of the slowest arm's
    # time at 100,000 customers). The bound is the same (tests/integration/test_sim_worlds.py).
    jobs: list[Callable[[list[object]], object]] = [
        partial(
            _arm,
            partial(run_policy, fresh, name, scorer, store, history=False, oracle_elsewhere=True),
        )
        for name in policies
    ]
    jobs.append(lambda keep: fixed_oracle(fresh))  # keeps nothing: fine beside an arm's state
    _JOBS[:] = jobs
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            *results, oracle = pool.map(_run_job, range(len(jobs)), chunksize=1)
    finally:
        _JOBS.clear()
    runs: dict[str, PolicyResult] = {}
    for name, result in zip(policies, results, strict=True):
        assert isinstance(result, PolicyResult)
        if result.oracle is None and isinstance(oracle, OracleBound):
            result = replace(result, oracle=oracle)
        runs[name] = result
    return runs


# A forked arm's run state, never freed: the pool terminates the process once it reported,
# and freeing millions of objects first (3-4 s of CPU at 100,000 customers) only delays that.
_KEPT: list[object] = []


def _run_job(index: int) -> object:
    # In the child; the result (an arm's without history, or the oracle) is pickled back.
    # No cyclic collection after a run: the first allocations after `gc.enable()` would
    # start one over every object the run kept (5.6-6.3 s after 100,000 customers, about 5%
    # of the command), to find nothing, in a process about to end.
    gc.disable()
    return _JOBS[index](_KEPT)


def _arm(run: Callable[..., PolicyResult], keep: list[object]) -> PolicyResult:
    # A worker given a second arm (more arms than workers) lets the first one's state go
    # first, cycles included: one run in memory.
    if keep:
        keep.clear()
        gc.collect()
    return run(keep=keep)


def _name(factory: object) -> str:
    module = getattr(factory, "__module__", "?")
    return f"{module}:{getattr(factory, '__qualname__', type(factory).__name__)}"


def training_seed(seed: int) -> int:
    """The training world's seed: other customers than the evaluation's, still reproducible."""
    return seed * 7919 + 104_729


def training_world(
    factory: WorldFactory, customers: int, train_days: int, seed: int, start: datetime
) -> Callable[[], World]:
    """A factory of the training period's world: other customers of the same world (another
    seed) over the `train_days` before `start`."""
    train_start = start - timedelta(days=train_days)

    def past() -> World:
        return factory(
            seed=training_seed(seed), customers=customers, days=train_days, start=train_start
        )

    return past


def train_period(
    factory: WorldFactory,
    customers: int,
    train_days: int,
    seed: int,
    start: datetime,
    train_policy: str,
    store: str = DEFAULT_STORE,
) -> tuple[LearnedScorer, dict[str, Any]]:
    """The training period: `train_policy` on other customers of the same world over the
    `train_days` before `start`, and a model trained on the attempts it made."""
    from dunwell.scoring.model import NotEnoughHistory, train

    past = training_world(factory, customers, train_days, seed, start)
    run = run_policy(past, train_policy, store=store)
    try:
        scorer, manifest = train(run.history, version=f"sim-seed{seed}")
    except NotEnoughHistory as exc:
        raise NotEnoughHistory(f"the training period gave too little history: {exc}") from None
    manifest["trained_at"] = start.isoformat()  # virtual time: the same seed, the same bytes
    validation = manifest["validation"]
    return scorer, {
        "policy": train_policy,
        "seed": training_seed(seed),
        "customers": customers,
        "days": train_days,
        "start": (start - timedelta(days=train_days)).isoformat(),
        "cases": run.cases,
        "rows": manifest["rows"],
        "approved": manifest["approved"],
        "auc": validation["auc"],
        "brier": validation["brier"],
        "base_rate": validation["base_rate"],
        "recovered_per_attempt_minor": manifest["recovered_per_attempt_minor"],
        "calibration": validation["calibration"],
        "feature_importances": validation["feature_importances"],
        "manifest": manifest,
    }
