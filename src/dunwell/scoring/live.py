"""The newest model in the model folder, picked up by a running service without a restart.

Retraining (`dunwell run`'s background thread, or `dunwell scoring train`: retrain.py) adds
a version folder. A service holds a `NewestModel` per folder, which looks for a newer
promoted version (gate.py), or a pinned one (`dunwell scoring pin`, a rollback), at most once
a `check_every` and swaps it in between decisions;
every retry it times names the version it used, so the audit trail shows when the switch
happened. A version that does not load (a half-copied folder, features of another dunwell)
is logged and skipped: the model in use stays, and without one the core keeps its
cold-start rules (`rows` is 0).

Tenants do not share what they learned: a model trained on one tenant's attempts lives in
that tenant's folder (`tenant_model_dir`) and times that tenant's retries only. A tenant
without one uses the models of the folder itself, trained on imported history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from dunwell.domain.scoring import RetryFeatures
from dunwell.scoring.model import LearnedScorer
from dunwell.scoring.store import (
    ModelStore,
    ModelStoreError,
    tenant_model_dir,
    tenants_with_own_models,
)

log = structlog.get_logger(__name__)


class NewestModel:
    def __init__(
        self,
        root: Path,
        check_every: timedelta = timedelta(minutes=1),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = ModelStore(root)
        self._every = check_every.total_seconds()
        self._monotonic = monotonic
        self._checked: float | None = None
        self._tried: str | None = None  # the version in use last seen, loaded or not
        self._model: LearnedScorer | None = None
        self.history_to: datetime | None = None  # the last attempt the model in use learned
        # Versions newer than the one in use that the promotion gate turned down: above 0, the
        # newest training predicts worse than the model in use, and someone should look.
        self.held_back = 0

    def current(self) -> LearnedScorer | None:
        now = self._monotonic()
        if self._checked is None or now - self._checked >= self._every:
            self._checked = now
            try:  # the pinned version, else the newest the gate promoted
                newest = self._store.serving()
            except (ModelStoreError, ValueError) as exc:  # a pin naming no version, unreadable
                log.error("scoring.pin_refused", folder=str(self._store.root), error=str(exc))
                newest = None  # the model in use stays
            self.held_back = self._store.turned_down_after(newest)
            if newest is not None and newest != self._tried:
                self._tried = newest
                try:
                    self._model = self._store.load(newest)
                    self.history_to = _history_to(self._store.manifest(newest))
                    log.info(
                        "scoring.model_loaded",
                        folder=str(self._store.root),
                        version=newest,
                        rows=self._model.rows,
                    )
                except ModelStoreError as exc:
                    log.error(
                        "scoring.model_refused",
                        folder=str(self._store.root),
                        version=newest,
                        error=str(exc),
                    )
        return self._model

    @property
    def version(self) -> str:
        model = self.current()
        return "none" if model is None else model.version

    @property
    def rows(self) -> int:
        """0 without a model: the core then keeps its cold-start rules."""
        model = self.current()
        return 0 if model is None else model.rows

    def score(self, features: Sequence[RetryFeatures]) -> list[float]:
        model = self.current()
        if model is None:
            raise RuntimeError("no retry model loaded: the core asks only when rows > 0")
        return model.score(features)

    def value_per_attempt(self, currency: str) -> int | None:
        model = self.current()
        return None if model is None else model.value_per_attempt(currency)

    def depth_note(self, lane: str, attempt_number: int) -> str | None:
        model = self.current()
        return None if model is None else model.depth_note(lane, attempt_number)


class TenantModels:
    """Per tenant, the newest model trained on its own attempts; until it has one (or when
    none of its versions loads), the newest model trained on imported history in `root`."""

    def __init__(
        self,
        root: Path,
        check_every: timedelta = timedelta(minutes=1),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = root
        self._newest = partial(NewestModel, check_every=check_every, monotonic=monotonic)
        self._shared = self._newest(root)
        self._own: dict[str, NewestModel] = {}

    def in_use(self, tenants: Sequence[str] = ()) -> dict[str, tuple[str, NewestModel]]:
        """Per tenant in `tenants`, with a model folder of its own, or whose retries were timed
        since the service started: where its model comes from (`own` or `imported`) and the
        model, for the metrics (a tenant without either has no model: the cold-start rules).
        The folders are listed each time, so a restarted service shows every tenant's own
        model before that tenant's next retry."""
        for tenant in (*tenants, *tenants_with_own_models(self._root)):
            self.for_tenant(tenant)
        out = {}
        for tenant, own in list(self._own.items()):
            if own.current() is not None:
                out[tenant] = ("own", own)
            elif self._shared.current() is not None:
                out[tenant] = ("imported", self._shared)
        return out

    def for_tenant(self, tenant_id: str) -> NewestModel:
        own = self._own.get(tenant_id)
        if own is None:
            # setdefault: two threads asking at once keep one and the same model.
            own = self._own.setdefault(
                tenant_id, self._newest(tenant_model_dir(self._root, tenant_id))
            )
        return own if own.current() is not None else self._shared


def _history_to(manifest: dict[str, object]) -> datetime | None:
    text = manifest.get("history_to")
    return datetime.fromisoformat(text) if isinstance(text, str) else None


class ModelsInUse(Collector):
    """`/metrics`: per tenant, the model version timing its retries, how many attempts it
    learned from, how old its newest attempt is (a model that stops getting younger means
    retraining has stopped), and how many newer versions the promotion gate turned down
    (above 0: the newest training predicts worse than the model in use)."""

    def __init__(
        self,
        models: TenantModels,
        now: Callable[[], datetime],
        tenants: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        # `tenants`: the tenants whose policies use the model (the service's database), so
        # those on the model trained on imported history show before their first retry.
        self.models, self.now, self.tenants = models, now, tenants

    def _tenants(self) -> Sequence[str]:
        if self.tenants is None:
            return ()
        try:
            return self.tenants()
        except SQLAlchemyError as exc:  # a scrape must answer; the folders still list
            log.warning("scoring.metrics_tenants_unavailable", error=str(exc))
            return ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["tenant", "source", "version"]
        rows = GaugeMetricFamily(
            "dunwell_retry_model_rows",
            "Attempts the retry model in use learned from",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "dunwell_retry_model_history_age_seconds",
            "Time since the newest attempt the retry model in use learned from",
            labels=labels,
        )
        held = GaugeMetricFamily(
            "dunwell_retry_model_versions_held_back",
            "Versions newer than the retry model in use that the promotion gate turned down",
            labels=labels,
        )
        now = self.now()
        for tenant, (source, model) in sorted(self.models.in_use(self._tenants()).items()):
            values = [tenant, source, model.version]
            rows.add_metric(values, model.rows)
            if model.history_to is not None:
                age.add_metric(values, max((now - model.history_to).total_seconds(), 0.0))
            held.add_metric(values, model.held_back)
        yield rows
        yield age
        yield held
