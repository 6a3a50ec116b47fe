"""Ingest: the one entry point for every event. Deduplicate, load, decide, save, in one
transaction: the case state, its scheduled actions, ledger entries and audit entries commit
together or not at all (an outbox: no state change without its actions, and no action
without its state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from dunwell.domain.case import RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context, Decision, Effect
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    CustomerAuthenticated,
    DisputeOpened,
    Event,
    NoticeDelivered,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentSucceeded,
    ProviderRetriesExhausted,
    SubscriptionCanceled,
)
from dunwell.domain.guardrails import NetworkLimits
from dunwell.domain.history import CustomerHistory, PastCase
from dunwell.domain.policy import Policy
from dunwell.domain.routing import Routing
from dunwell.domain.scoring import RetryScorer
from dunwell.engine.clock import Clock
from dunwell.engine.effects_codec import effect_to_dict
from dunwell.engine.metrics import Metrics
from dunwell.providers.circuit import CircuitBreaker
from dunwell.providers.taxonomy import builtin_taxonomy
from dunwell.store.tenant_cache import TenantCache, TenantProfile
from dunwell.store.unit_of_work import UnitOfWork, Units

_INTERNAL = (ActionDue, AttemptErrored, NoticeDelivered)
_CONFLICT_RETRIES = 5
_NO_ROUTING = Routing()  # a tenant without a routing table: its own provider only


class UnknownPolicy(LookupError):
    pass


@dataclass
class IngestResult:
    event_id: str
    duplicate: bool
    outcome: str
    case_ids: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


@dataclass
class PolicyBook:
    policies: dict[str, Policy]
    default_name: str = "default"

    def get(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            raise UnknownPolicy(
                f"policy {name!r} is not loaded (have: {sorted(self.policies)})"
            ) from None


class Ingest:
    def __init__(
        self,
        units: Units,
        policies: PolicyBook,
        clock: Clock,
        limits: NetworkLimits | None = None,
        metrics: Metrics | None = None,
        tenants: TenantCache | None = None,
        routing: dict[str, Routing] | None = None,
        breaker: CircuitBreaker | None = None,
        scorers: Callable[[str], RetryScorer | None] | None = None,
    ) -> None:
        # Opens a unit of work: SQLAlchemy's, or the simulator's in-memory store's.
        self.units = units
        # A tenant's learned retry model, if one is trained (else cold start): each tenant's
        # own attempts make its own model (scoring/live.py).
        self.scorers = scorers
        self.policies = policies
        self.clock = clock
        self.limits = limits or NetworkLimits()
        self.metrics = metrics or Metrics()
        self.tenants = tenants or TenantCache(units)
        # Per tenant: provider settings and the routing table (DUNWELL_ROUTING_FILE).
        self.routing = routing or {}
        # The charge runner's breaker: open circuits are planned around, not charged into.
        self.breaker = breaker or CircuitBreaker()

    def __call__(
        self,
        tenant_id: str,
        event: Event,
        payload: dict[str, Any] | None = None,
        *,
        action_id: int | None = None,
        complete_action_id: int | None = None,
    ) -> IngestResult:
        """Process one event. `action_id`: the due action row this ActionDue is for;
        `complete_action_id`: the running action whose outcome this event is."""
        refreshed = False
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            try:
                result = self._ingest(tenant_id, event, payload, action_id, complete_action_id)
                outcome = "duplicate" if result.duplicate else result.outcome
                self.metrics.events.labels(event.type, outcome).inc()
                self.metrics.decline_seen(event, outcome)
                return result
            except UnknownPolicy:
                # Perhaps a cached assignment changed since: read it afresh once, then fail.
                if refreshed or not self.tenants.forget(tenant_id):
                    raise
                refreshed = True
            except (IntegrityError, StaleDataError):
                # Another writer got there first: the same event id (a duplicate), or another
                # event for the same case (decide again on what it wrote).
                with self.units() as uow:
                    row = uow.events.find(tenant_id, event.id)
                if row is not None:
                    return IngestResult(event.id, True, row.outcome, row.case_ids)
                if attempt == _CONFLICT_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _ingest(
        self,
        tenant_id: str,
        event: Event,
        payload: dict[str, Any] | None,
        action_id: int | None,
        complete_action_id: int | None,
    ) -> IngestResult:
        now = self.clock.now()
        # Read before the transaction: on a cache miss it reads in a transaction of its own.
        tenant = self.tenants.profile(tenant_id)
        with self.units() as uow:
            if not isinstance(event, ActionDue):
                existing = uow.events.find(tenant_id, event.id)
                if existing is not None:
                    if complete_action_id is not None:
                        # The outcome is recorded already; the action it settles is done too.
                        uow.actions.settle(complete_action_id, "done", now, was="running")
                        uow.commit()
                    return IngestResult(event.id, True, existing.outcome, existing.case_ids)

            targets = self._targets(uow, tenant_id, event)
            result = IngestResult(event.id, False, "ignored")
            for case in targets:
                decision = self._decide(uow, tenant_id, tenant, case, event, now)
                self._save(uow, tenant_id, event, decision, now, action_id, payload)
                result.outcome = _merge(result.outcome, decision.outcome)
                if decision.case is not None:
                    result.case_ids.append(decision.case.id)
                result.effects.extend(decision.effects)
            if complete_action_id is not None:
                uow.actions.settle(complete_action_id, "done", now, was="running")
            if not isinstance(event, ActionDue):
                # Written last, with its outcome: the unique key still refuses a duplicate
                # delivered concurrently (its transaction fails and the retry reports it).
                uow.events.add(
                    tenant_id,
                    event.id,
                    event.type,
                    event.occurred_at,
                    now,
                    payload or {},
                    result.case_ids,
                    result.outcome,
                )
            uow.commit()
            return result

    def _targets(self, uow: UnitOfWork, tenant_id: str, event: Event) -> list[RecoveryCase | None]:
        if isinstance(
            event, PaymentFailed | PaymentSucceeded | DisputeOpened | ProviderRetriesExhausted
        ):
            return [uow.cases.by_invoice(tenant_id, event.invoice_id, lock=True)]
        if isinstance(event, _INTERNAL):
            return [uow.cases.get(tenant_id, event.case_id, lock=True)]
        if isinstance(event, CustomerAuthenticated) and event.invoice_id:
            return [uow.cases.by_invoice(tenant_id, event.invoice_id, lock=True)]
        if isinstance(event, PaymentMethodUpdated | CustomerAuthenticated):
            found = uow.cases.open_by(tenant_id, customer_id=event.customer_id, lock=True)
        else:
            assert isinstance(event, SubscriptionCanceled)
            found = uow.cases.open_by(tenant_id, subscription_id=event.subscription_id, lock=True)
        return list(found) or [None]

    def _decide(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        tenant: TenantProfile | None,
        case: RecoveryCase | None,
        event: Event,
        now: datetime,
    ) -> Decision:
        credentials: set[str] = set()
        if case is not None:
            credentials.add(case.payment_method.credential_key)
            policy = self.policies.get(case.policy_name)
        else:
            storefront = event.subscription.storefront if isinstance(event, PaymentFailed) else None
            assigned = tenant.policy_name(storefront) if tenant is not None else None
            policy = self.policies.get(assigned or self.policies.default_name)
        if isinstance(event, PaymentFailed | PaymentMethodUpdated):
            credentials.add(event.payment_method.credential_key)
        paid_at = None
        if isinstance(event, PaymentFailed) and case is None:
            paid_at = uow.invoices.paid_at(tenant_id, event.invoice_id)
        limits = self.limits
        if tenant is not None and tenant.visa_rule != limits.visa_rule:
            limits = NetworkLimits(
                visa_rule="2025" if tenant.visa_rule == "2025" else "2024",
                max_attempts_per_case=limits.max_attempts_per_case,
            )
        routing = self.routing.get(tenant_id, _NO_ROUTING)
        if isinstance(event, PaymentFailed) and case is None:
            # Whether the provider retries by itself is fixed when the case opens: its
            # webhook endpoints' `provider_retries_enabled` and the routing file both count.
            routing = routing.with_retrying(uow.tenants.retrying_providers(tenant_id))
        ctx = Context(
            tenant_id=tenant_id,
            ledger=uow.ledger.load(tenant_id, credentials, now),
            limits=limits,
            invoice_paid_at=paid_at,
            # Context's default, passed here: the default factory imports it on every call.
            taxonomy=builtin_taxonomy(),
            routing=routing,
            paused_providers=self.breaker.paused(now),
            scorer=None if self.scorers is None else self.scorers(tenant_id),
            history=_history(uow, tenant_id, case, event, policy, now),
        )
        return decide(case, event, policy, now, ctx)

    def _save(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        event: Event,
        decision: Decision,
        now: datetime,
        action_id: int | None,
        payload: dict[str, Any] | None,
    ) -> None:
        case = decision.case
        # A store that keeps no audit trail (the simulator's) is not handed its entries: they
        # were a tenth of a simulation's time, formatted to be dropped.
        keeps_audit = uow.audit.keeps
        if keeps_audit:
            _audit_decision(uow, tenant_id, event, decision, now, payload)
        if decision.invoice_paid and isinstance(event, PaymentSucceeded):
            uow.invoices.mark_paid(tenant_id, event.invoice_id, event.occurred_at, event.id)
        if case is None or decision.outcome == "ignored":
            if action_id is not None and uow.actions.settle(
                action_id, "canceled", now, was="scheduled"
            ):
                if case is not None:
                    # A stale delivery: whatever the plan still wants gets a row again.
                    self._sync(uow, case, event, now)
            return
        uow.cases.save(case, now)
        uow.ledger.add_many(tenant_id, case.id, decision.ledger_entries)
        uow.history.add_signals(tenant_id, case.customer.id, decision.signals)
        for attempt_id in decision.ledger_uncount:
            uow.ledger.uncount(attempt_id)
        effects = [effect_to_dict(e) for e in decision.effects]
        for effect in effects if keeps_audit else ():
            uow.audit.add(
                tenant_id,
                case.id,
                now,
                "effect",
                effect["kind"],
                _effect_text(effect),
                {"effect": effect},
                event_id=event.id,
            )
        if action_id is not None:
            # Settle the row being run before syncing, so a re-planned key (a refused retry
            # moved to later) gets a fresh row instead of overwriting this one. Whatever its
            # status, as before: the case lock makes this delivery the one that counts.
            uow.actions.settle(
                action_id, "running" if effects else "done", now, was=None, effects=effects
            )
        elif effects:
            uow.actions.add_effects(tenant_id, case.id, f"effect:{event.id}", effects, now)
        self._sync(uow, case, event, now)

    @staticmethod
    def _sync(uow: UnitOfWork, case: RecoveryCase, event: Event, now: datetime) -> None:
        changes = uow.actions.sync(case, now, opened_here=uow.cases.opened_here(case.id))
        for change, action in changes if uow.audit.keeps else ():
            uow.audit.add(
                case.tenant_id,
                case.id,
                now,
                "action",
                action.rule,
                f"{change} {action.key} for {action.due_at.isoformat()}: {action.reason}",
                {
                    "change": change,
                    "key": action.key,
                    "type": str(action.type),
                    "due_at": action.due_at.isoformat(),
                },
                event_id=event.id,
            )


def _audit_decision(
    uow: UnitOfWork,
    tenant_id: str,
    event: Event,
    decision: Decision,
    now: datetime,
    payload: dict[str, Any] | None,
) -> None:
    """The event and every explanation of the decision, in the audit trail."""
    case_id = decision.case.id if decision.case is not None else None
    uow.audit.add(
        tenant_id,
        case_id,
        now,
        "event",
        event.type,
        _event_text(event),
        {"payload": payload} if payload else {"event": _internal_data(event)},
        event_id=event.id,
    )
    for note in decision.explanations:
        uow.audit.add(
            tenant_id,
            case_id,
            now,
            "decision",
            note.rule,
            note.text,
            {"inputs": dict(note.inputs), "outcome": decision.outcome},
            event_id=event.id,
        )


def _history(
    uow: UnitOfWork,
    tenant_id: str,
    case: RecoveryCase | None,
    event: Event,
    policy: Policy,
    now: datetime,
) -> CustomerHistory:
    """What the policy's risk rules look at, and only then: a failure or a card update reads
    the customer's recent signals, a failure opening a case their earlier cases too."""
    if isinstance(event, PaymentFailed):
        customer_id = event.customer.id
    elif isinstance(event, PaymentMethodUpdated):
        customer_id = event.customer_id
    else:
        return CustomerHistory()
    horizon = policy.risk.card_testing.horizon()
    signals = uow.history.signals(tenant_id, customer_id, now - horizon) if horizon else []
    chronic = policy.risk.chronic
    past: list[PastCase] = []
    if chronic is not None and case is None and isinstance(event, PaymentFailed):
        past = uow.history.past_cases(tenant_id, customer_id, now - chronic.lookback)
    return CustomerHistory(tuple(past), tuple(signals))


def _merge(current: str, new: str) -> str:
    order = ["ignored", "updated", "closed", "opened"]
    return max(current, new, key=order.index)


def _event_text(event: Event) -> str:
    if isinstance(event, PaymentFailed):
        return (
            f"payment failed: {event.decline.provider_code or 'no code'} on invoice "
            f"{event.invoice_id} ({event.amount})"
        )
    if isinstance(event, ActionDue):
        return f"action {event.action_key} due"
    return f"{event.type} ({event.id})"


def _internal_data(event: Event) -> dict[str, Any]:
    return {"type": event.type, "id": event.id, "occurred_at": event.occurred_at.isoformat()}


def _effect_text(effect: dict[str, Any]) -> str:
    kind = effect["kind"]
    if kind == "charge":
        return (
            f"charge attempt {effect['attempt_id']} (idempotency key {effect['idempotency_key']})"
        )
    if kind == "notice":
        return f"send {effect['template']} by {effect['channel']}"
    if kind == "access":
        return f"set access to {effect['level']}"
    return f"escalate to a human: {effect['reason']}"
