"""Retraining: a new model version from what is known now, and each tenant's on a schedule.

Every tenant whose policies time retries with the model (a lane with `align: learned`) gets
its own model, trained on the attempts dunwell made for it (`store.tenant_model_dir`).
`dunwell scoring train --all-tenants --every 24h` runs the schedule as a process of its own
(a deployment of several workers runs exactly one); `dunwell run`, the embedded default,
starts that command once a round as a child process, from a background thread (`Retrainer`
with `RoundInChild`, DUNWELL_RETRAIN_EVERY).
A round whose history is the one the newest model learned from adds no version; a tenant
that cannot be trained yet (too few attempts) keeps the cold-start rules and is tried again
next round. A new version times retries only if the promotion gate finds it predicts no
worse than the model in use (gate.py); one turned down is kept for the record. A running
service picks up what a round promotes (`live.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dunwell.domain.policy import Align, Policy
from dunwell.domain.scoring import RetryFeatures
from dunwell.scoring.features import history_features
from dunwell.scoring.from_store import history_from_store
from dunwell.scoring.gate import Champion, judge, unjudged
from dunwell.scoring.history import HistoryRow, history_digest
from dunwell.scoring.model import NotEnoughHistory, in_time_order, train
from dunwell.scoring.store import ModelStore, ModelStoreError, tenant_model_dir
from dunwell.store.tables import PolicyAssignment, Tenant

log = structlog.get_logger(__name__)


class RoundFailed(Exception):
    """One training could not make a model; what the user should know is the text."""


class NotEnoughYet(RoundFailed):
    """Too few attempts to learn from: normal for a new tenant, tried again next round."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one round did for one tenant; `text` is what a person reads."""

    status: Literal["trained", "rejected", "unchanged", "waiting", "failed"]
    text: str


@dataclass(frozen=True, slots=True)
class Saved:
    """A version written by `train_version`, with the gate's verdict (its manifest's `gate`)."""

    version: str
    gate: dict[str, Any]

    @property
    def promoted(self) -> bool:
        return bool(self.gate["promoted"])


def train_version(
    root: Path,
    rows: list[HistoryRow],
    manifest_extra: dict[str, Any],
    *,
    skip_unchanged: bool,
    skip_without_newer: bool = False,
    keep: int | None = None,
    gate: bool = True,
) -> Saved | None:
    """A new version in `root` from `rows`; None when `skip_unchanged` and they are exactly
    what the newest version learned from, or when `skip_without_newer` and none of them is
    later than its last attempt (a sliding window that only lost old cases: an idle
    tenant). With `gate`, the version serves only if the promotion gate passes it (without,
    it serves whatever it scores: a person's `--no-gate`). With `keep`, only the newest
    `keep` versions and the one in use keep their model files afterwards
    (`ModelStore.prune`). Raises `RoundFailed` when no model can be made."""
    store = ModelStore(root)
    if (skip_unchanged or skip_without_newer) and store.versions():
        newest = store.manifest()
        if skip_unchanged and newest.get("history_digest") == history_digest(rows):
            return None
        if skip_without_newer and rows and "history_to" in newest:
            if max(r.attempted_at for r in rows) <= datetime.fromisoformat(newest["history_to"]):
                return None
    try:
        rows = in_time_order(rows)
        features = history_features(rows)  # once, for the training and the gate
        scorer, manifest = train(rows, version=store.next_version(), features=features)
    except NotEnoughHistory as exc:
        raise NotEnoughYet(f"cannot train: {exc}") from None
    manifest.update(manifest_extra)
    manifest["gate"] = (
        _verdict(store, rows, features)
        if gate
        else unjudged("promoted without a comparison (--no-gate)", forced=True)
    )
    try:
        version = store.save(scorer, manifest)
    except ModelStoreError as exc:
        raise RoundFailed(str(exc)) from None
    saved = Saved(version, manifest["gate"])
    if not saved.promoted:
        log.warning(
            "scoring.version_not_promoted",
            folder=str(root),
            version=version,
            in_use=saved.gate["champion"],
            reason=saved.gate["reason"],
        )
    if keep is not None:
        try:
            pruned = store.prune(keep)
        except (ModelStoreError, ValueError) as exc:  # a broken pin: keep every file for now
            log.error("scoring.prune_skipped", folder=str(root), error=str(exc))
            pruned = []
        if pruned:
            log.info("scoring.models_pruned", folder=str(root), versions=pruned, keep=keep)
    return saved


def _verdict(
    store: ModelStore, rows: list[HistoryRow], features: list[RetryFeatures]
) -> dict[str, Any]:
    """The gate's verdict on a version trained on `rows`, against the folder's model in use."""
    try:
        in_use = store.serving()
    except (ModelStoreError, ValueError) as exc:  # a broken pin: a person must look at it
        raise RoundFailed(f"cannot tell the version in use: {exc}") from None
    if in_use is None:
        return unjudged("promoted, not compared: the first version of this folder")
    try:
        scorer = store.load(in_use)
        history_to = datetime.fromisoformat(store.manifest(in_use)["history_to"])
    except (ModelStoreError, KeyError, ValueError) as exc:
        return unjudged(f"promoted, not compared: version {in_use} in use does not load ({exc})")
    return judge(rows, Champion(scorer, in_use, history_to), features)


def tenant_history(
    sessions: sessionmaker[Session], tenant: str, days: int, now: datetime
) -> list[HistoryRow]:
    """The tenant's own attempts on the cases opened in the last `days`."""
    try:
        return history_from_store(sessions, tenant, now - timedelta(days=days), now)
    except SQLAlchemyError as exc:
        raise RoundFailed(f"cannot read the tenant's attempts: {exc}") from None


def learning_tenants(
    sessions: sessionmaker[Session], policies: dict[str, Policy], default_policy: str
) -> list[str]:
    """The tenants with a policy that times retries with the model: any storefront's, or the
    service's default when the tenant has no default of its own."""
    learned = {name for name, p in policies.items() if _learns(p)}
    with sessions() as session:
        tenants = session.scalars(select(Tenant.id).order_by(Tenant.id)).all()
        assigned: dict[str, dict[str, str]] = {}
        for row in session.scalars(select(PolicyAssignment)):
            assigned.setdefault(row.tenant_id, {})[row.storefront] = row.policy_name
    out = []
    for tenant in tenants:
        names = set(assigned.get(tenant, {}).values())
        if "" not in assigned.get(tenant, {}):
            names.add(default_policy)
        if names & learned:
            out.append(tenant)
    return out


def _learns(policy: Policy) -> bool:
    return any(lane.align is Align.LEARNED for lane in policy.lanes.values())


def retrain_tenants(
    root: Path,
    sessions: sessionmaker[Session],
    policies: dict[str, Policy],
    default_policy: str,
    days: int,
    now: datetime,
    keep: int | None = None,
    gate: bool = True,
) -> dict[str, Outcome]:
    """One round over every learning tenant: tenant -> what happened (a new version in use,
    one the gate turned down, no new attempt, not enough yet, or why it failed). Each is
    logged; none stops the others."""
    outcomes: dict[str, Outcome] = {}
    for tenant in learning_tenants(sessions, policies, default_policy):
        try:
            rows = tenant_history(sessions, tenant, days, now)
            extra = {
                "history_files": [],
                "history_tenant": {"tenant": tenant, "days": days, "attempts": len(rows)},
            }
            # Only the engine's own attempts: a row later than the newest model's last one
            # is the only way the history can have grown.
            saved = train_version(
                tenant_model_dir(root, tenant),
                rows,
                extra,
                skip_unchanged=True,
                skip_without_newer=True,
                keep=keep,
                gate=gate,
            )
        except NotEnoughYet as exc:
            log.info("scoring.retrain_waiting", tenant=tenant, reason=str(exc))
            outcomes[tenant] = Outcome("waiting", f"not yet: {exc}")
        except RoundFailed as exc:
            log.error("scoring.retrain_failed", tenant=tenant, error=str(exc))
            outcomes[tenant] = Outcome("failed", f"failed: {exc}")
        else:
            if saved is None:
                log.info("scoring.retrain_skipped", tenant=tenant, reason="no new attempts")
                outcomes[tenant] = Outcome("unchanged", "no attempt added since the newest model")
            elif not saved.promoted:
                outcomes[tenant] = Outcome(
                    "rejected",
                    f"version {saved.version} {saved.gate['reason']}; version "
                    f"{saved.gate['champion']} stays in use",
                )
            else:
                log.info("scoring.retrained", tenant=tenant, version=saved.version, rows=len(rows))
                outcomes[tenant] = Outcome(
                    "trained", f"version {saved.version} ({len(rows)} attempts)"
                )
    return outcomes


class RoundInChild:
    """One round as `dunwell scoring train --all-tenants`, in a child process, for `dunwell
    run`: building the features of a year of attempts holds the GIL for seconds, and the
    gate fits a second model; a process of its own keeps that, and the memory, away from the
    API and the worker. The child reads the same settings (the environment, the working
    folder); its log lines go to the same stderr. Returns tenant -> outcome text."""

    def __init__(self, root: Path, days: int) -> None:
        self.command = [
            sys.executable,
            "-m",
            "dunwell.cli",
            "scoring",
            "train",
            "--all-tenants",
            "--days",
            str(days),
            "--model-dir",
            str(root),
            "--json",
        ]
        self._child: subprocess.Popen[str] | None = None
        self._stopping = threading.Event()

    def __call__(self) -> dict[str, str]:
        if self._stopping.is_set():
            return {}
        self._child = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        out, _ = self._child.communicate()
        code = self._child.returncode
        tenants: dict[str, str] = {}
        for line in out.splitlines():  # one JSON object a round; nothing else on stdout
            if line.startswith("{"):
                tenants = json.loads(line).get("tenants", {})
        if code == 0:
            log.info("scoring.retrain_round", tenants=tenants)
        elif self._stopping.is_set():
            log.info("scoring.retrain_round_stopped", exit_code=code)
        else:  # 1: a tenant failed or was turned down by the gate; each logged by the child
            log.warning("scoring.retrain_round_incomplete", exit_code=code, tenants=tenants)
        return tenants

    def stop(self) -> None:
        """End a round under way: every save is atomic, so cutting it leaves no half version."""
        self._stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()


class Retrainer:
    """A round every `every`, in a daemon thread, until `stop()`. The first round runs at
    once, so a restarted service does not wait a day for what it missed. `round_` is
    `retrain_tenants` bound to its arguments, or a `RoundInChild` (`dunwell run`)."""

    def __init__(
        self,
        every: timedelta,
        round_: Callable[[], object],
    ) -> None:
        self._every = every.total_seconds()
        self._round = round_
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dunwell-retrainer", daemon=True)
        self.rounds = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end, and a round under way in a child to end too; a round in this
        process finishes its tenant's save (atomic either way) only if it ends within
        `timeout`, else the process exit cuts it harmlessly."""
        self._stop.set()
        stop_round = getattr(self._round, "stop", None)
        if stop_round is not None:
            stop_round()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception as exc:  # a round must never end the schedule (the database away)
                log.error("scoring.retrain_failed", error=str(exc))
            self.rounds += 1
            self._stop.wait(self._every)
