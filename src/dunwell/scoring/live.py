"""The newest model in the model folder, picked up by a running service without a restart.

Retraining is a batch job (`dunwell scoring train --tenant T`, from cron or a systemd timer):
it adds a version folder. A service holds a `NewestModel`, which looks for a newer version at
most once a `check_every` and swaps it in between decisions; every retry it times names the
version it used, so the audit trail shows when the switch happened. A version that does not
load (a half-copied folder, features of another dunwell) is logged and skipped: the model in
use stays, and without one the core keeps its cold-start rules (`rows` is 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import structlog

from dunwell.domain.scoring import RetryFeatures
from dunwell.scoring.model import LearnedScorer
from dunwell.scoring.store import ModelStore, ModelStoreError

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
        self._tried: str | None = None  # the newest version seen, loaded or not
        self._model: LearnedScorer | None = None

    def current(self) -> LearnedScorer | None:
        now = self._monotonic()
        if self._checked is None or now - self._checked >= self._every:
            self._checked = now
            versions = self._store.versions()
            newest = versions[-1] if versions else None
            if newest is not None and newest != self._tried:
                self._tried = newest
                try:
                    self._model = self._store.load(newest)
                    log.info("scoring.model_loaded", version=newest, rows=self._model.rows)
                except ModelStoreError as exc:
                    log.error("scoring.model_refused", version=newest, error=str(exc))
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
