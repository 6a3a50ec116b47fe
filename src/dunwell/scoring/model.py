"""The retry model: a gradient-boosted classifier of "this charge succeeds", validated.

scikit-learn's `HistGradientBoostingClassifier` with native categorical features (lane,
decline code, brand, country, segment) and the numeric ones as they are. Validation is
out-of-time: the latest 25% of attempts (by time) are held out while a first model is fit on
the rest, which gives the AUC, Brier score, a calibration table and permutation feature
importances; the model that is kept is then refit on every row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from threadpoolctl import ThreadpoolController, threadpool_limits

from dunwell.domain.lanes import CUSTOMER_ACTION_LANES
from dunwell.domain.scoring import CATEGORICAL, FEATURE_NAMES, RetryFeatures
from dunwell.scoring.features import history_features
from dunwell.scoring.history import HistoryRow, history_digest

MAX_CATEGORIES = 200  # per categorical feature; rarer values count as unknown
VALIDATION_SHARE = 0.25
SEED = 0
MEMO_LIMIT = 500_000
# An attempt number counts as seen in the history from this many rows of its lane on; the
# decay beyond the deepest seen one is learned from the last two seen (`depth_decay`).
MIN_DEPTH_ROWS = 30


class NotEnoughHistory(ValueError):
    pass


@dataclass
class Encoder:
    """Categorical values to small integers (unknown: NaN, which the model handles)."""

    vocab: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def fit(cls, rows: Sequence[RetryFeatures]) -> Encoder:
        vocab: dict[str, dict[str, int]] = {}
        for index, name in enumerate(FEATURE_NAMES):
            if name not in CATEGORICAL:
                continue
            counts: dict[str, int] = {}
            for row in rows:
                value = str(row.values()[index])
                counts[value] = counts.get(value, 0) + 1
            common = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
            vocab[name] = {value: code for code, value in enumerate(sorted(common))}
        return cls(vocab)

    def matrix(self, rows: Sequence[RetryFeatures]) -> np.ndarray:
        out = np.empty((len(rows), len(FEATURE_NAMES)), dtype=float)
        for i, row in enumerate(rows):
            for j, (name, value) in enumerate(zip(FEATURE_NAMES, row.values(), strict=True)):
                if name in CATEGORICAL:
                    out[i, j] = self.vocab[name].get(str(value), math.nan)
                else:
                    out[i, j] = float(value)
        return out


@dataclass
class LearnedScorer:
    """The core's `RetryScorer`, over a fitted classifier.

    A plan is recomputed after every event with mostly the same candidate hours, and one
    `predict_proba` call costs milliseconds whatever its size: answers are memoised (the
    model is fixed, so the same features always get the same probability), and the trees run
    on one thread (OpenMP's thread start-up costs more than it saves on a few rows)."""

    version: str
    rows: int
    encoder: Encoder
    classifier: Any
    # Minor units an attempt recovered on average in the training history, per currency:
    # what a policy's relative value bar (`timing.learned_min_value_share`) is a share of.
    recovered_per_attempt: dict[str, int] = field(default_factory=dict)
    # Per lane: the deepest attempt number the history has enough rows of, and the factor
    # a probability is multiplied by for each attempt beyond it (`depth_decay`).
    depth: dict[str, Depth] = field(default_factory=dict)
    _memo: dict[RetryFeatures, float] = field(default_factory=dict, repr=False, compare=False)

    def score(self, features: Sequence[RetryFeatures]) -> list[float]:
        # The answer is built from what this call found and computed, never re-read from the
        # memo: another thread (API and worker share the model) may empty it meanwhile.
        memo = self._memo
        if len(memo) > MEMO_LIMIT:
            memo.clear()
        answers = [memo.get(f) for f in features]
        if None not in answers:
            return answers  # type: ignore[return-value]  # no None left: all floats
        asked = zip(features, answers, strict=True)
        missing = list(dict.fromkeys(f for f, a in asked if a is None))
        with _one_thread():
            probabilities = self.classifier.predict_proba(self.encoder.matrix(missing))[:, 1]
        new = {
            f: round(float(p) * self.beyond_history(f.lane, f.attempt_number), 4)
            for f, p in zip(missing, probabilities, strict=True)
        }
        memo.update(new)
        return [new[f] if a is None else a for f, a in zip(features, answers, strict=True)]

    def beyond_history(self, lane: str, attempt_number: int) -> float:
        """The factor for an attempt deeper than the history shows (1.0 within it): trees
        answer the deepest seen attempt's probability for any deeper one, but every failed
        attempt says a little more that this issuer will not approve this card."""
        depth = self.depth.get(lane)
        if depth is None or attempt_number <= depth.deepest:
            return 1.0
        return float(depth.decay ** (attempt_number - depth.deepest))

    def depth_note(self, lane: str, attempt_number: int) -> str | None:
        depth = self.depth.get(lane)
        if depth is None or attempt_number <= depth.deepest or depth.decay >= 1.0:
            return None
        return (
            f"attempt {attempt_number} is deeper than the history's {depth.deepest}: "
            f"x{depth.decay:.2f} per attempt beyond"
        )

    def value_per_attempt(self, currency: str) -> int | None:
        return self.recovered_per_attempt.get(currency.upper())

    def __getstate__(self) -> dict[str, Any]:  # the memo is not part of the model file
        return {
            "version": self.version,
            "rows": self.rows,
            "encoder": self.encoder,
            "classifier": self.classifier,
            "recovered_per_attempt": self.recovered_per_attempt,
            "depth": self.depth,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("recovered_per_attempt", {})  # a model saved before it was kept
        self.__dict__.setdefault("depth", {})  # the same: no decay beyond the history
        self._memo = {}


# What `recovered_per_attempt` averages over, as its manifest key says. Models trained before
# 5 December 2026 lack the key: their average counted every lane (`base_counts_dead_cards`).
BASE_OVER = "retry_lanes"


def recovered_per_attempt(rows: Sequence[HistoryRow]) -> dict[str, int]:
    """Per currency, the amount approved attempts recovered divided by the attempts made, in
    the lanes where a retry is the remedy (not `CUSTOMER_ACTION_LANES`), rounded to a minor
    unit; over every attempt when a currency has none there. Rows without a currency are left
    out.

    Charges a past schedule made on cards only the customer could fix (expired, lost, needing
    authentication) recovered next to nothing; counted in, they would lower the value bar in
    proportion to how wasteful that schedule was, and a smart policy trained on a worse
    history would spend more attempts."""
    priced = [row for row in rows if row.currency]
    remedied = _average([row for row in priced if row.lane not in CUSTOMER_ACTION_LANES])
    return {c: remedied.get(c, anyway) for c, anyway in _average(priced).items()}


def _average(rows: Sequence[HistoryRow]) -> dict[str, int]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        total = totals.setdefault(row.currency.upper(), [0, 0])
        total[0] += row.amount_minor if row.approved else 0
        total[1] += 1
    return {currency: round(s / n) for currency, (s, n) in sorted(totals.items())}


def base_counts_dead_cards(manifest: dict[str, Any]) -> bool:
    """Whether a model's value-bar base was averaged the old way, over every lane (it still
    works, with a bar lower than the policies' shares were set for: retrain it)."""
    return bool(manifest.get("recovered_per_attempt_minor")) and (
        manifest.get("recovered_per_attempt_over") != BASE_OVER
    )


@dataclass(frozen=True)
class Depth:
    deepest: int
    decay: float

    def as_dict(self) -> dict[str, Any]:
        return {"deepest_attempt": self.deepest, "decay_per_attempt_beyond": self.decay}


def depth_decay(rows: Sequence[HistoryRow]) -> dict[str, Depth]:
    """Per lane, the deepest attempt number with `MIN_DEPTH_ROWS` rows, and how the success
    rate fell from the attempt before it to it (capped at 1: never a rise).

    The customers still failing at attempt k are the ones least likely to pay at k+1 (their
    issuer approves less, their money is further away), so the rate keeps falling with depth;
    the last step the history shows is the best estimate of the next ones. A lane with one
    seen attempt number, or none approved at the one before, learns nothing (factor 1)."""
    counts: dict[tuple[str, int], list[int]] = {}
    for row in rows:
        count = counts.setdefault((row.lane, row.attempt_number), [0, 0])
        count[0] += 1
        count[1] += 1 if row.approved else 0
    out: dict[str, Depth] = {}
    for lane in sorted({lane for lane, _ in counts}):
        seen = [k for (name, k), (n, _) in counts.items() if name == lane and n >= MIN_DEPTH_ROWS]
        if not seen:
            continue
        deepest = max(seen)
        decay = 1.0
        if deepest - 1 in seen:
            before, last = counts[(lane, deepest - 1)], counts[(lane, deepest)]
            if before[1] > 0:
                decay = min(1.0, round((last[1] / last[0]) / (before[1] / before[0]), 4))
        out[lane] = Depth(deepest, decay)
    return out


_CONTROLLER: list[ThreadpoolController] = []  # found once: see _one_thread


def _one_thread() -> Any:
    """The trees on one thread for the duration of a `with`. `threadpool_limits(1)` looks for
    the process's thread pools (every shared library loaded) at each call: about a quarter of
    a backtest's time and of a `smart` plan's. The pools are found once instead; the libraries
    that own them (OpenMP, BLAS) are loaded with scikit-learn, before the first score."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1)


def _classifier() -> HistGradientBoostingClassifier:
    mask = [name in CATEGORICAL for name in FEATURE_NAMES]
    return HistGradientBoostingClassifier(
        categorical_features=mask,
        max_iter=120,
        learning_rate=0.05,
        max_leaf_nodes=8,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=SEED,
    )


def in_time_order(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """The order training (and the promotion gate) reads rows in: by attempt time."""
    return sorted(rows, key=lambda r: (r.attempted_at, r.case_id, r.attempt_number))


def train(
    rows: Sequence[HistoryRow],
    version: str = "unsaved",
    features: Sequence[RetryFeatures] | None = None,
) -> tuple[LearnedScorer, dict[str, Any]]:
    """Fit, validate out of time, refit on everything; the manifest's metrics beside it.
    `features`: `history_features(in_time_order(rows))`, when the caller has them already
    (the slowest step of a training; the promotion gate needs them too)."""
    history = in_time_order(rows)
    features = history_features(history) if features is None else list(features)
    rows, features = timing_rows(history, features)
    labels = np.array([1 if r.approved else 0 for r in rows])
    if len(rows) < 50 or labels.min(initial=1) == labels.max(initial=0):
        raise NotEnoughHistory(
            f"{len(rows)} attempts ({int(labels.sum())} approved) in the lanes where a retry "
            "is the remedy: at least 50 with both outcomes are needed"
        )
    split = int(len(rows) * (1 - VALIDATION_SHARE))
    held = _classifier()
    train_encoder = Encoder.fit(features[:split])
    x_train, x_valid = (
        train_encoder.matrix(features[:split]),
        train_encoder.matrix(features[split:]),
    )
    y_train, y_valid = labels[:split], labels[split:]
    with threadpool_limits(1):  # the same numbers on any machine, and no oversubscription
        return _train(
            history, rows, labels, features, held, x_train, x_valid, y_train, y_valid, version
        )


def timing_rows(
    rows: Sequence[HistoryRow], features: Sequence[RetryFeatures]
) -> tuple[list[HistoryRow], list[RetryFeatures]]:
    """The attempts the model learns timing from (with their features, in the same order):
    those outside `CUSTOMER_ACTION_LANES`. A charge after the customer authenticated or
    changed something succeeds because they did, at whatever hour and however soon after the
    last decline; learned from, those charges taught the model that a retry a day after a
    decline succeeds nine times in ten (about 90 such charges in a 13,333-customer history
    were enough for a tree leaf), and it priced `smart`'s next-day retries at 0.7. Their
    features are computed with every attempt of the case, so the others' stay the same."""
    keep = [i for i, row in enumerate(rows) if row.lane not in CUSTOMER_ACTION_LANES]
    return [rows[i] for i in keep], [features[i] for i in keep]


def _train(
    history: Sequence[HistoryRow],
    rows: Sequence[HistoryRow],
    labels: np.ndarray,
    features: list[RetryFeatures],
    held: HistGradientBoostingClassifier,
    x_train: np.ndarray,
    x_valid: np.ndarray,
    y_train: np.ndarray,
    y_valid: np.ndarray,
    version: str,
) -> tuple[LearnedScorer, dict[str, Any]]:
    split = len(y_train)
    held.fit(x_train, y_train)
    predicted = held.predict_proba(x_valid)[:, 1]
    validation: dict[str, Any] = {
        "rows": int(len(y_valid)),
        "approved": int(y_valid.sum()),
        "from": rows[split].attempted_at.isoformat(),
        "to": rows[-1].attempted_at.isoformat(),
        "split": "out of time: the latest 25% of attempts",
        "base_rate": round(float(y_valid.mean()), 4),
        "brier": round(float(brier_score_loss(y_valid, predicted)), 4),
        "log_loss": round(float(log_loss(y_valid, predicted, labels=[0, 1])), 4),
        "auc": None,
        "calibration": calibration_bins(y_valid, predicted),
        "feature_importances": {},
    }
    if 0 < y_valid.sum() < len(y_valid):
        validation["auc"] = round(float(roc_auc_score(y_valid, predicted)), 4)
        importances = permutation_importance(
            held, x_valid, y_valid, scoring="roc_auc", n_repeats=3, random_state=SEED
        )
        validation["feature_importances"] = {
            name: round(float(value), 4)
            for name, value in sorted(
                zip(FEATURE_NAMES, importances.importances_mean, strict=True),
                key=lambda item: -item[1],
            )
        }
    scorer = fit_scorer(rows, features, labels, version, history)
    per_attempt, depth = scorer.recovered_per_attempt, scorer.depth
    manifest = {
        "version": version,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(rows),
        "approved": int(labels.sum()),
        # Charges after the customer acted (`timing_rows`): in the history, not learned from.
        "rows_left_out_customer_action": len(history) - len(rows),
        "cases": len({r.case_id for r in history}),
        "history_from": history[0].attempted_at.isoformat(),
        "history_to": history[-1].attempted_at.isoformat(),
        "history_digest": history_digest(history),
        "features": list(FEATURE_NAMES),
        "categorical": sorted(CATEGORICAL),
        "model": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {
            k: v for k, v in scorer.classifier.get_params().items() if k != "categorical_features"
        },
        "library": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "recovered_per_attempt_minor": per_attempt,
        "recovered_per_attempt_over": BASE_OVER,
        "depth": {lane: d.as_dict() for lane, d in depth.items()},
        "validation": validation,
    }
    return scorer, manifest


def fit_scorer(
    rows: Sequence[HistoryRow],
    features: Sequence[RetryFeatures],
    labels: np.ndarray,
    version: str,
    history: Sequence[HistoryRow] | None = None,
) -> LearnedScorer:
    """The scorer the rows teach (`features` and `labels` are theirs, in the same order),
    without validation: the model `train` keeps, and the one the promotion gate compares
    with the model in use (gate.py). The value bar's base and the depth rule are read off
    `history` (default: the rows), which may hold the attempts `timing_rows` leaves out of
    the fit. Call it under `threadpool_limits(1)`."""
    encoder = Encoder.fit(features)
    classifier = _classifier()
    classifier.fit(encoder.matrix(features), labels)
    history = rows if history is None else history
    return LearnedScorer(
        version,
        len(rows),
        encoder,
        classifier,
        recovered_per_attempt(history),
        depth_decay(history),
    )


def calibration_bins(
    labels: np.ndarray, predicted: np.ndarray, bins: int = 10
) -> list[dict[str, Any]]:
    """Predicted vs observed success rate in equal-width probability bins (non-empty ones)."""
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (predicted >= low) & ((predicted < high) if high < 1 else (predicted <= high))
        count = int(inside.sum())
        if count:
            out.append(
                {
                    "from": round(float(low), 2),
                    "to": round(float(high), 2),
                    "rows": count,
                    "predicted": round(float(predicted[inside].mean()), 4),
                    "observed": round(float(labels[inside].mean()), 4),
                }
            )
    return out
