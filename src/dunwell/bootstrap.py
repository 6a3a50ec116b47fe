"""The composition root: builds the engine's parts from settings. No I/O at import time.

Tests and the simulator call `build` with their own clock, provider and channels.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from dunwell.channels.base import AccessGate, Notifier
from dunwell.channels.log import LogAccessGate, LogNotifier
from dunwell.domain.guardrails import NetworkLimits
from dunwell.domain.routing import Routing
from dunwell.domain.scoring import RetryScorer
from dunwell.engine.clock import Clock, SystemClock
from dunwell.engine.ingest import Ingest, PolicyBook
from dunwell.engine.metrics import Metrics
from dunwell.engine.runner import ActionRunner
from dunwell.policies import load_policies
from dunwell.providers.accounts import TenantAdapters
from dunwell.providers.base import PaymentProvider, ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker
from dunwell.providers.routing_file import load_routing
from dunwell.providers.sim import SimulatedProcessor
from dunwell.providers.sim_http import HttpSimProvider
from dunwell.settings import Settings
from dunwell.store.database import make_engine, make_sessionmaker
from dunwell.store.memory import MemoryStore, MemoryUnitOfWork
from dunwell.store.tables import PolicyAssignment, Tenant
from dunwell.store.tenant_cache import TenantCache
from dunwell.store.unit_of_work import UnitOfWork


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    policies: PolicyBook
    ingest: Ingest
    runner: ActionRunner
    tenants: TenantCache

    def unit(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    def close(self) -> None:
        self.engine.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    providers: ProviderRegistry | None = None,
    notifier: Notifier | None = None,
    access: AccessGate | None = None,
    routing: dict[str, Routing] | None = None,
    breaker: CircuitBreaker | None = None,
    scorer: RetryScorer | None = None,
) -> Services:
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    metrics = Metrics()
    metrics.watch_backlog(sessions, clock.now)
    scorers = None if scorer is None else _same_for_all(scorer)
    models = None
    if scorer is None and settings.model_dir is not None:
        from dunwell.scoring.live import TenantModels  # scikit-learn only then

        models = TenantModels(settings.model_dir)
        scorers = models.for_tenant
    if providers is None:
        fallback: PaymentProvider = (
            HttpSimProvider(settings.sim_psp_url) if settings.sim_psp_url else SimulatedProcessor()
        )
        # Tenants' own provider accounts first; the simulated processor for the others.
        providers = ProviderRegistry(
            {}, fallback=fallback, accounts=TenantAdapters(sessions, settings.secret_key)
        )
    tenants = TenantCache(partial(UnitOfWork, sessions))
    book, ingest, runner = _engine(
        settings,
        tenants,
        clock,
        metrics,
        providers,
        notifier or LogNotifier(),
        access or LogAccessGate(),
        routing if routing is not None else load_routing(settings.routing_file),
        breaker or CircuitBreaker(),
        scorers,
    )
    if models is not None:
        from dunwell.scoring.live import ModelsInUse
        from dunwell.scoring.retrain import learning_tenants

        # Every tenant whose policies use the model is listed from the first scrape, the
        # ones on the model trained on imported history included, not only those with a
        # model folder of their own or a retry timed since the service started.
        learning = partial(learning_tenants, sessions, book.policies, book.default_name)
        metrics.registry.register(ModelsInUse(models, clock.now, learning))
    return Services(settings, engine, sessions, clock, book, ingest, runner, tenants)


@dataclass
class MemoryServices:
    """The same engine on `store/memory.py`: the simulator's store (one process, no files)."""

    settings: Settings
    store: MemoryStore
    clock: Clock
    policies: PolicyBook
    ingest: Ingest
    runner: ActionRunner
    tenants: TenantCache

    def unit(self) -> MemoryUnitOfWork:
        return self.store.unit()

    def close(self) -> None:
        pass


def build_in_memory(
    settings: Settings,
    *,
    clock: Clock,
    providers: ProviderRegistry,
    notifier: Notifier,
    access: AccessGate,
    routing: dict[str, Routing] | None = None,
    breaker: CircuitBreaker | None = None,
    scorer: RetryScorer | None = None,
) -> MemoryServices:
    """`build` with the in-memory store: no database, no migrations, nothing on disk.
    `settings.database_url` is not read; tenants are added with `store.add_tenant`."""
    store = MemoryStore()
    tenants = TenantCache(store.unit)
    book, ingest, runner = _engine(
        settings,
        tenants,
        clock,
        Metrics(),
        providers,
        notifier,
        access,
        routing if routing is not None else load_routing(settings.routing_file),
        breaker or CircuitBreaker(),
        None if scorer is None else _same_for_all(scorer),
    )
    return MemoryServices(settings, store, clock, book, ingest, runner, tenants)


def _engine(
    settings: Settings,
    tenants: TenantCache,
    clock: Clock,
    metrics: Metrics,
    providers: ProviderRegistry,
    notifier: Notifier,
    access: AccessGate,
    routing: dict[str, Routing],
    breaker: CircuitBreaker,
    scorers: Callable[[str], RetryScorer | None] | None,
) -> tuple[PolicyBook, Ingest, ActionRunner]:
    """Ingest and the action runner on whatever store `tenants` reads: one wiring for both."""
    book = PolicyBook(load_policies(settings.policy_dir), settings.default_policy)
    book.get(settings.default_policy)  # fail at start, not at the first event
    limits = NetworkLimits(
        visa_rule=settings.visa_rule, max_attempts_per_case=settings.max_attempts_per_case
    )
    ingest = Ingest(
        tenants.units,
        book,
        clock,
        limits,
        metrics,
        tenants,
        routing=routing,
        breaker=breaker,
        scorers=scorers,
    )
    runner = ActionRunner(ingest, providers, notifier, access, clock, breaker=breaker)
    return book, ingest, runner


def _same_for_all(scorer: RetryScorer) -> Callable[[str], RetryScorer]:
    """One model for every tenant: the one the caller (simulator, tests) trained."""
    return lambda _tenant_id: scorer


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_tenant(
    services: Services, tenant_id: str, name: str, api_key: str | None, policy: str | None = None
) -> str:
    """Create or update a tenant; returns its API key (a new one when none is given)."""
    key = api_key or "dw_" + secrets.token_urlsafe(24)
    with UnitOfWork(services.sessions) as uow:
        tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            tenant = Tenant(
                id=tenant_id,
                name=name,
                api_key_hash=hash_api_key(key),
                visa_rule=services.settings.visa_rule,
                created_at=services.clock.now(),
            )
            uow.session.add(tenant)
        else:
            tenant.api_key_hash = hash_api_key(key)
        if policy is not None:
            services.policies.get(policy)
            if uow.tenants.policy_name(tenant_id, None) is None:
                uow.session.add(
                    PolicyAssignment(tenant_id=tenant_id, storefront="", policy_name=policy)
                )
        uow.commit()
    services.tenants.invalidate()
    return key


def assign_policy(services: Services, tenant_id: str, storefront: str | None, policy: str) -> None:
    services.policies.get(policy)
    with UnitOfWork(services.sessions) as uow:
        row = uow.session.scalars(
            select(PolicyAssignment).where(
                PolicyAssignment.tenant_id == tenant_id,
                PolicyAssignment.storefront == (storefront or ""),
            )
        ).one_or_none()
        if row is None:
            uow.session.add(
                PolicyAssignment(
                    tenant_id=tenant_id, storefront=storefront or "", policy_name=policy
                )
            )
        else:
            row.policy_name = policy
        uow.commit()
    services.tenants.invalidate()
