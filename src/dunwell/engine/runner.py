"""The action runner: carries out due actions and feeds every outcome back into ingest.

A pass first finishes actions already `running` (effects decided but not known to be carried
out: just decided, or interrupted by a crash), then turns due `scheduled` actions into
decisions. A crash anywhere leaves either the action still due, or running with its effects
recorded; a re-run charge carries the same idempotency key (the attempt id), so the provider
answers it once. `start` and `finish` are the two steps the durable worker
(`engine/durable.py`) runs per batch; `run_due` is the single-threaded pass the simulator and
tests use in virtual time, never beside durable workers on one database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError

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
from dunwell.providers.base import ChargeResult, ProviderError, ProviderRegistry
from dunwell.providers.circuit import CircuitBreaker

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
        ingest: Ingest,
        providers: ProviderRegistry,
        notifier: Notifier,
        access: AccessGate,
        clock: Clock,
        batch_size: int = 200,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.units = ingest.units  # the same store as ingest's
        self.ingest = ingest
        self.providers = providers
        self.notifier = notifier
        self.access = access
        self.clock = clock
        self.batch_size = batch_size
        # Shared with ingest (when built by bootstrap), which plans around open circuits.
        self.breaker = breaker or ingest.breaker
        self.metrics = ingest.metrics

    def run_due(self) -> int:
        """One pass; returns how many actions it carried out."""
        done = 0
        for work in self._running():
            self._perform(work)
            done += 1
        now = self.clock.now()
        with self.units() as uow:
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

    def start(self, action_ids: list[int]) -> list[int]:
        """Turn the given rows into decisions (the durable worker's first step).

        Idempotent: a row no longer `scheduled` is left as it is, so a step re-run after a
        crash decides nothing twice. Returns the ids now `running` (effects to carry out).
        """
        with self.units() as uow:
            rows = [
                (r.id, r.tenant_id, r.case_id, r.key, r.status)
                for r in uow.actions.by_ids(action_ids)
            ]
        running: list[int] = []
        for action_id, tenant_id, case_id, key, status in rows:
            if status == "scheduled":
                event = ActionDue(f"due:{action_id}", self.clock.now(), case_id, key)
                if self.ingest(tenant_id, event, action_id=action_id).effects:
                    running.append(action_id)
            elif status == "running":
                running.append(action_id)
        return running

    def finish(self, action_ids: list[int]) -> int:
        """Carry out the effects of the given `running` rows and record their outcomes.

        A re-run after a crash re-sends a charge with the same idempotency key (the provider
        answers it once) and records its outcome under the same event id (deduplicated).
        """
        with self.units() as uow:
            works = [
                _Work(r.id, r.tenant_id, r.case_id, [effect_from_dict(e) for e in r.effects])
                for r in uow.actions.by_ids(action_ids)
                if r.status == "running"
            ]
        for work in works:
            self._perform(work)
        return len(works)

    @staticmethod
    def _lookup(adapter: object, charge: Charge) -> ChargeResult | None:
        lookup = getattr(adapter, "lookup", None)  # only adapters that can ask (OutcomeLookup)
        if lookup is None:
            return None
        try:
            result: ChargeResult | None = lookup(charge)
        except ProviderError:
            return None
        return result

    def run_until_idle(self, max_passes: int = 1000) -> int:
        total = 0
        for _ in range(max_passes):
            count = self.run_due()
            total += count
            if count == 0:
                return total
        return total

    def _running(self) -> list[_Work]:
        with self.units() as uow:
            return [
                _Work(
                    row.id, row.tenant_id, row.case_id, [effect_from_dict(e) for e in row.effects]
                )
                for row in uow.actions.running(self.batch_size)
            ]

    def _perform(self, work: _Work) -> None:
        outcomes: list[Event] = []
        for effect in work.effects:
            if isinstance(effect, ChangeAccess):
                self.access.change_access(effect)
                self.metrics.actions.labels("access", effect.level.value).inc()
            elif isinstance(effect, Escalate):
                self.access.escalate(effect)
                self.metrics.actions.labels("escalate", "done").inc()
            elif isinstance(effect, Charge):
                outcomes.append(self._charge(work, effect))
            elif isinstance(effect, SendNotice):
                outcomes.append(self._notice(work, effect))
        if outcomes:
            # Every outcome is recorded, the last one settling the row. A crash in between
            # leaves the row running: its re-run re-sends a charge under the same idempotency
            # key and never a notice, and their outcomes come back under the same event ids
            # (duplicates). Today a decision has at most one charge or notice; nothing is lost
            # if one ever has more.
            for outcome in outcomes[:-1]:
                self.ingest(work.tenant_id, outcome)
            self.ingest(work.tenant_id, outcomes[-1], complete_action_id=work.action_id)
            return
        with self.units() as uow:
            uow.actions.settle(work.action_id, "done", self.clock.now(), was="running")
            uow.commit()

    def _notice(self, work: _Work, notice: SendNotice) -> Event:
        # Claimed in its own transaction before the channel sees it: a re-run after a crash
        # in between cannot tell whether the message went out, and sends no second one.
        try:
            with self.units() as uow:
                first = uow.actions.claim_notice_send(
                    work.tenant_id, notice.case_id, notice.notice_id, self.clock.now()
                )
                uow.commit()
        except IntegrityError:  # a concurrent re-run claimed it first
            first = False
        undeliverable = False
        if first:
            delivery = self.notifier.send(notice)
            ok, detail = delivery.ok, delivery.detail
            undeliverable = not ok and delivery.undeliverable
        else:
            # Unknown whether it went out: no fallback either, the customer may have it.
            ok, detail = False, "interrupted by a crash while sending; not sent again"
            log.warning(
                "notice.not_resent",
                tenant_id=work.tenant_id,
                case_id=notice.case_id,
                notice_id=notice.notice_id,
            )
        self.metrics.actions.labels("notice", "sent" if ok else "failed").inc()
        return NoticeDelivered(
            f"delivered:{notice.notice_id}",
            self.clock.now(),
            notice.case_id,
            notice.notice_id,
            ok,
            detail,
            undeliverable,
        )

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
                outcome_id, self.clock.now(), charge.case_id, charge.attempt_id, message, sent=False
            )
        started = time.perf_counter()
        try:
            adapter = self.providers.for_charge(charge, work.tenant_id)
            try:
                result = adapter.charge(charge)
            except ProviderError as first:
                # The outcome is unknown (a 5xx or a timeout may come after the capture):
                # ask the provider under the same key before anything else; never re-charge
                # blindly. Nothing found means nothing finished: a technical retry re-sends
                # the same key later.
                found = self._lookup(adapter, charge)
                if found is None:
                    raise first
                log.info(
                    "attempt.resolved_by_lookup",
                    tenant_id=work.tenant_id,
                    case_id=charge.case_id,
                    attempt_id=charge.attempt_id,
                    error=str(first),
                )
                result = found
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
        with self.units() as uow:
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
