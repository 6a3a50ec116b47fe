"""The action runner: carries out due actions and feeds every outcome back into ingest.

A pass first finishes actions already `running` (effects decided but not known to be carried
out: just decided, or interrupted by a crash), then turns due `scheduled` actions into
decisions. A crash anywhere leaves either the action still due, or running with its effects
recorded; a re-run charge carries the same idempotency key (the attempt id), so the provider
answers it once. (Multi-process claiming arrives with the durable-execution engine.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session, sessionmaker

from dunwell.channels.base import AccessGate, Notifier
from dunwell.domain.decision import ChangeAccess, Charge, Effect, Escalate, SendNotice
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    Event,
    NoticeDelivered,
    PaymentFailed,
    PaymentSucceeded,
)
from dunwell.engine.clock import Clock
from dunwell.engine.effects_codec import effect_from_dict
from dunwell.engine.ingest import Ingest
from dunwell.providers.base import ProviderError, ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker
from dunwell.store.unit_of_work import UnitOfWork

log = structlog.get_logger("dunwell.runner")


@dataclass(frozen=True)
class _Work:
    action_id: int
    tenant_id: str
    case_id: str
    effects: list[Effect]


class ActionRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        ingest: Ingest,
        providers: ProviderRegistry,
        notifier: Notifier,
        access: AccessGate,
        clock: Clock,
        batch_size: int = 200,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.sessions = sessions
        self.ingest = ingest
        self.providers = providers
        self.notifier = notifier
        self.access = access
        self.clock = clock
        self.batch_size = batch_size
        self.breaker = breaker or CircuitBreaker()
        self.metrics = ingest.metrics

    def run_due(self) -> int:
        """One pass; returns how many actions it carried out."""
        done = 0
        for work in self._running():
            self._perform(work)
            done += 1
        now = self.clock.now()
        with UnitOfWork(self.sessions) as uow:
            due = [
                (row.id, row.tenant_id, row.case_id, row.key)
                for row in uow.actions.due(now, self.batch_size)
            ]
        for action_id, tenant_id, case_id, key in due:
            event = ActionDue(f"due:{action_id}", self.clock.now(), case_id, key)
            result = self.ingest(tenant_id, event, action_id=action_id)
            if result.effects:
                self._perform(_Work(action_id, tenant_id, case_id, result.effects))
            done += 1
        return done

    def run_until_idle(self, max_passes: int = 1000) -> int:
        total = 0
        for _ in range(max_passes):
            count = self.run_due()
            total += count
            if count == 0:
                return total
        return total

    def _running(self) -> list[_Work]:
        with UnitOfWork(self.sessions) as uow:
            return [
                _Work(
                    row.id, row.tenant_id, row.case_id, [effect_from_dict(e) for e in row.effects]
                )
                for row in uow.actions.running(self.batch_size)
            ]

    def _perform(self, work: _Work) -> None:
        outcome: Event | None = None
        for effect in work.effects:
            if isinstance(effect, ChangeAccess):
                self.access.change_access(effect)
                self.metrics.actions.labels("access", effect.level.value).inc()
            elif isinstance(effect, Escalate):
                self.access.escalate(effect)
                self.metrics.actions.labels("escalate", "done").inc()
            elif isinstance(effect, Charge):
                outcome = self._charge(work, effect)
            elif isinstance(effect, SendNotice):
                delivery = self.notifier.send(effect)
                self.metrics.actions.labels("notice", "sent" if delivery.ok else "failed").inc()
                outcome = NoticeDelivered(
                    f"delivered:{effect.notice_id}",
                    self.clock.now(),
                    effect.case_id,
                    effect.notice_id,
                    delivery.ok,
                    delivery.detail,
                )
        if outcome is not None:
            self.ingest(work.tenant_id, outcome, complete_action_id=work.action_id)
            return
        with UnitOfWork(self.sessions) as uow:
            row = uow.actions.get(work.action_id)
            if row is not None and row.status == "running":
                row.status, row.updated_at = "done", self.clock.now()
            uow.commit()

    def _charge(self, work: _Work, charge: Charge) -> Event:
        log.info(
            "attempt.charge",
            tenant_id=work.tenant_id,
            case_id=charge.case_id,
            attempt_id=charge.attempt_id,
            provider=charge.provider,
        )
        # One outcome per send: a crash re-run of this action row reuses the id (deduplicated);
        # a later technical re-send of the same attempt comes from another row.
        outcome_id = f"outcome:{charge.attempt_id}:{work.action_id}"
        provider = charge.provider
        if not self.breaker.allow(provider, self.clock.now()):
            self.metrics.provider_errors.labels(provider, "circuit_open").inc()
            self.metrics.actions.labels("retry", "circuit_open").inc()
            message = f"circuit open for provider {provider}: not sent"
            return AttemptErrored(
                outcome_id, self.clock.now(), charge.case_id, charge.attempt_id, message
            )
        started = time.perf_counter()
        try:
            result = self.providers.for_charge(charge).charge(charge)
        except ProviderError as exc:
            self.breaker.record(provider, False, self.clock.now())
            self.metrics.provider_errors.labels(provider, "error").inc()
            self.metrics.actions.labels("retry", "provider_error").inc()
            log.warning(
                "attempt.provider_error",
                tenant_id=work.tenant_id,
                case_id=charge.case_id,
                attempt_id=charge.attempt_id,
                error=str(exc),
            )
            return AttemptErrored(
                outcome_id, self.clock.now(), charge.case_id, charge.attempt_id, str(exc)
            )
        finally:
            self.metrics.provider_seconds.labels(provider).observe(time.perf_counter() - started)
        self.breaker.record(provider, True, self.clock.now())
        self.metrics.actions.labels("retry", "approved" if result.approved else "declined").inc()
        now = self.clock.now()
        if result.approved:
            return PaymentSucceeded(
                outcome_id,
                now,
                charge.invoice_id,
                charge.amount,
                charge.provider,
                charge.customer_id,
                charge.attempt_id,
            )
        with UnitOfWork(self.sessions) as uow:
            case = uow.cases.get(work.tenant_id, charge.case_id)
        assert case is not None and result.decline is not None
        return PaymentFailed(
            outcome_id,
            now,
            case.customer,
            case.subscription,
            case.invoice_id,
            charge.amount,
            charge.provider,
            charge.payment_method,
            result.decline,
            attempt_id=charge.attempt_id,
        )


def run_forever(runner: ActionRunner, stop: threading.Event, interval_seconds: float = 1.0) -> None:
    """The embedded worker loop of `dunwell run`: due times live in the database."""
    while not stop.is_set():
        try:
            busy = runner.run_due()
        except Exception:  # keep the loop alive; the action stays due and is retried
            log.exception("runner.pass_failed")
            busy = 0
        if not busy:
            stop.wait(interval_seconds)
