"""The promotion gate: a retrained model times retries only if it predicts no worse than the
model in use.

Retraining runs by itself (retrain.py), so nobody looks at a new version before it serves.
A version worse than the one in use (a bad import of past attempts, a history window cut too
short, a dunwell or scikit-learn upgrade that trains differently) must not replace it
silently: it is saved with its verdict, for the record, and the model in use stays.

The comparison is like for like. Both models are judged on the attempts made after the model
in use was trained, which neither has seen; the challenger is the new training fitted on only
the attempts up to then, the information the model in use had. The measure is log loss: it
counts calibration as well as ranking, and the value bar multiplies the probability by the
amount. The challenger passes unless its log loss is worse by more than `TOLERANCE`. With
fewer than `MIN_FRESH_ROWS` fresh attempts, or only one outcome among them, nothing can be
judged: the new version serves and its manifest says it was not compared.

Not caught: fresh attempts that are wrong themselves (a webhook mapping that records
approvals as declines); both models are judged on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from dunwell.domain.scoring import RetryFeatures
from dunwell.scoring.features import history_features
from dunwell.scoring.history import HistoryRow
from dunwell.scoring.model import LearnedScorer, fit_scorer, in_time_order, timing_rows

MIN_FRESH_ROWS = 200
MIN_KNOWN_ROWS = 50  # what `train` needs too
TOLERANCE = 0.02  # relative: a log loss 2% above the champion's still passes


@dataclass(frozen=True, slots=True)
class Champion:
    """The model in use: the newest promoted version of the folder that loads."""

    scorer: LearnedScorer
    version: str
    history_to: datetime


def judge(
    rows: Sequence[HistoryRow],
    champion: Champion,
    features: Sequence[RetryFeatures] | None = None,
) -> dict[str, Any]:
    """The manifest's `gate` for a version trained on `rows` while `champion` is in use:
    whether it is promoted, why, and the numbers both models scored. `features`:
    `history_features(in_time_order(rows))` when the training computed them already."""
    rows = in_time_order(rows)
    features = history_features(rows) if features is None else list(features)
    rows, features = timing_rows(rows, features)  # what both models are for
    labels = np.array([1 if r.approved else 0 for r in rows])
    known = [i for i, r in enumerate(rows) if r.attempted_at <= champion.history_to]
    fresh = [i for i, r in enumerate(rows) if r.attempted_at > champion.history_to]
    verdict: dict[str, Any] = {
        "champion": champion.version,
        "champion_history_to": champion.history_to.isoformat(),
        "min_fresh_rows": MIN_FRESH_ROWS,
        "tolerance": TOLERANCE,
        "fresh_rows": len(fresh),
    }
    fresh_labels = labels[fresh]
    if len(fresh) < MIN_FRESH_ROWS or fresh_labels.min() == fresh_labels.max():
        return verdict | {
            "promoted": True,
            "compared": False,
            "reason": (
                f"promoted, not compared: {len(fresh)} attempts since version {champion.version}'s "
                f"history ({int(fresh_labels.sum())} approved); at least {MIN_FRESH_ROWS} with "
                "both outcomes are needed"
            ),
        }
    known_labels = labels[known]
    if len(known) < MIN_KNOWN_ROWS or known_labels.min(initial=1) == known_labels.max(initial=0):
        return verdict | {
            "promoted": True,
            "compared": False,
            "reason": (
                f"promoted, not compared: {len(known)} attempts up to version "
                f"{champion.version}'s last are too few to fit a challenger on"
            ),
        }
    with threadpool_limits(1):
        challenger = fit_scorer(
            [rows[i] for i in known], [features[i] for i in known], known_labels, "challenger"
        )
    fresh_features = [features[i] for i in fresh]
    theirs = _metrics(fresh_labels, champion.scorer.score(fresh_features))
    ours = _metrics(fresh_labels, challenger.score(fresh_features))
    promoted = ours["log_loss"] <= theirs["log_loss"] * (1 + TOLERANCE)
    compare = (
        f"log loss {ours['log_loss']:.4f} against version {champion.version}'s "
        f"{theirs['log_loss']:.4f} on the {len(fresh)} attempts since its history"
    )
    return verdict | {
        "promoted": promoted,
        "compared": True,
        "reason": ("promoted: " if promoted else "not promoted: ") + compare,
        "fresh_from": rows[fresh[0]].attempted_at.isoformat(),
        "fresh_to": rows[fresh[-1]].attempted_at.isoformat(),
        "fresh_approved": int(fresh_labels.sum()),
        "champion_metrics": theirs,
        "challenger_metrics": ours,
    }


def _metrics(labels: np.ndarray, predicted: Sequence[float]) -> dict[str, float]:
    p = np.clip(np.array(predicted, dtype=float), 1e-4, 1 - 1e-4)
    return {
        "log_loss": round(float(log_loss(labels, p, labels=[0, 1])), 4),
        "brier": round(float(brier_score_loss(labels, p)), 4),
        "auc": round(float(roc_auc_score(labels, p)), 4),
    }


def unjudged(reason: str, *, forced: bool = False) -> dict[str, Any]:
    """The `gate` of a version promoted without a comparison: the first in its folder, the
    model in use does not load, or a person said so (`--no-gate`)."""
    return {"promoted": True, "compared": False, "forced": forced, "reason": reason}


def promoted(manifest: dict[str, Any]) -> bool:
    """Whether a version may time retries. Versions saved before the gate have no verdict:
    they were all in use in their day."""
    gate = manifest.get("gate")
    return not isinstance(gate, dict) or gate.get("promoted") is not False
