"""Prometheus metrics of one engine instance, on a registry of its own (no global state).

Counters are updated where things happen; the due backlog and its age are read from the
database when Prometheus scrapes `/metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dunwell.domain.declines import classify_decline
from dunwell.domain.events import Event, PaymentFailed
from dunwell.domain.records import evolve
from dunwell.providers.taxonomy import builtin_taxonomy
from dunwell.store.tables import ActionRow

log = structlog.get_logger("dunwell.declines")

M = TypeVar("M", Counter, Histogram)


class _Labelled(Generic[M]):
    """A labelled metric whose children are looked up once per label values.

    prometheus_client's `labels()` checks the values and takes a lock on every call, and the
    engine counts a few times per event: the child for given values is always the same
    object (nothing here removes children), so it is kept. The metric itself stays in the
    registry; `metric` is it."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = _Labelled(
            Counter(
                "dunwell_events",
                "Events ingested, by type and outcome",
                ["type", "outcome"],
                registry=self.registry,
            )
        )
        self.actions = _Labelled(
            Counter(
                "dunwell_actions",
                "Actions carried out, by type and outcome",
                ["type", "outcome"],
                registry=self.registry,
            )
        )
        self.provider_seconds = _Labelled(
            Histogram(
                "dunwell_provider_request_seconds",
                "Time a provider took to answer a charge",
                ["provider"],
                registry=self.registry,
            )
        )
        self.unknown_decline_codes = Counter(
            "dunwell_unknown_decline_codes",
            "Declines whose code no table knows: classified conservatively; see "
            "`dunwell codes unknown`",
            ["provider"],
            registry=self.registry,
        )
        self.provider_errors = _Labelled(
            Counter(
                "dunwell_provider_errors",
                "Charges without an outcome (timeouts, 5xx, open circuit)",
                ["provider", "reason"],
                registry=self.registry,
            )
        )
        self.workflows_redispatched = Counter(
            "dunwell_workflows_redispatched",
            "Batches of due actions handed to DBOS again: `failed` (DBOS ended the workflow in an "
            "error; a fresh workflow takes the rows) or `lost` (the hand-off never reached DBOS)",
            ["reason"],
            registry=self.registry,
        )

    def decline_seen(self, event: Event, outcome: str) -> None:
        """Count a decline with an unknown code once it was decided on (not a duplicate, not
        ignored): the same cases `dunwell codes unknown` lists from the audit trail."""
        if not isinstance(event, PaymentFailed) or outcome in ("duplicate", "ignored"):
            return
        report = event.decline
        if not report.provider:
            report = evolve(report, provider=event.provider)
        found = classify_decline(report, event.payment_method.brand, builtin_taxonomy())
        if not found.known:
            self.unknown_decline_codes.labels(found.provider or "(none)").inc()
            log.warning(
                "decline.unknown_code",
                provider=found.provider,
                provider_code=report.provider_code,
                network_code=report.network_code,
                event_id=event.id,
                lane=found.lane.value,
            )

    def watch_backlog(self, sessions: sessionmaker[Session], now: Callable[[], datetime]) -> None:
        self.registry.register(_Backlog(sessions, now))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Backlog(Collector):
    def __init__(self, sessions: sessionmaker[Session], now: Callable[[], datetime]) -> None:
        self.sessions, self.now = sessions, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.now()
        with self.sessions() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(ActionRow.due_at)).where(
                    ActionRow.status == "scheduled", ActionRow.due_at <= now
                )
            ).one()
            running = session.scalar(
                select(func.count()).select_from(ActionRow).where(ActionRow.status == "running")
            )
        yield GaugeMetricFamily("dunwell_due_backlog", "Scheduled actions already due", count)
        age = 0.0
        if oldest is not None:
            oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            age = max((now - oldest_at).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "dunwell_due_backlog_age_seconds", "How late the oldest due action is", age
        )
        yield GaugeMetricFamily(
            "dunwell_running_actions", "Actions whose effects are being carried out", running or 0
        )
