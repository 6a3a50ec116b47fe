"""Versioned models on disk: one folder per version with the model and its manifest.

    models/
      0001/manifest.json   version, trained_at, rows, features, validation (AUC, Brier,
                           calibration bins, feature importances), the file's SHA-256
      0001/model.pkl       the fitted scorer (pickle: load only models you trained)
      0002/...
      tenants/acme/0001/...   trained on tenant acme's own attempts (scoring train --tenant)

The version in use is the pinned one (`pinned.json`, `dunwell scoring pin`: a person's
rollback), else the newest promoted: a retrained version the promotion gate turned down
(gate.py; its manifest's `gate.promoted` is false) stays on disk for the record and never
serves. A model whose file does not match the manifest's hash is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import structlog

from dunwell.domain.scoring import FEATURE_NAMES
from dunwell.scoring.gate import promoted
from dunwell.scoring.model import LearnedScorer, base_counts_dead_cards

log = structlog.get_logger(__name__)

MANIFEST, MODEL, PIN = "manifest.json", "model.pkl", "pinned.json"


class ModelStoreError(ValueError):
    pass


def tenant_model_dir(root: Path, tenant_id: str) -> Path:
    """The folder of the models trained on one tenant's own attempts. Tenant ids are free
    text; quoted (dots too) each is one safe folder name, never `..` or a path."""
    return root / "tenants" / quote(tenant_id, safe="").replace(".", "%2E")


def tenants_with_own_models(root: Path) -> list[str]:
    """The tenant ids that have a model folder of their own under `root` (`tenant_model_dir`
    read backwards), whether or not it holds a version yet. A folder whose name is not one
    `tenant_model_dir` makes (copied in by hand, say) names no tenant and is left out."""
    folder = root / "tenants"
    if not folder.is_dir():
        return []
    names = (p.name for p in folder.iterdir() if p.is_dir())
    return sorted(unquote(n) for n in names if tenant_model_dir(root, unquote(n)).name == n)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    def serving(self) -> str | None:
        """The version in use: the pinned one, else the newest the gate promoted (None: no
        version, or none promoted)."""
        pinned = self.pinned()
        if pinned is not None:
            return str(pinned["version"])
        for version in reversed(self.versions()):
            if promoted(self.manifest(version)):
                return version
        return None

    def turned_down_after(self, version: str | None) -> int:
        """How many versions newer than `version` (of all, for None) the gate turned down. A
        manifest being written or unreadable is no verdict and is not counted."""
        count = 0
        for newer in reversed(self.versions()):
            if newer == version:
                break
            try:
                count += not promoted(self.manifest(newer))
            except (OSError, ValueError):
                continue
        return count

    def pinned(self) -> dict[str, Any] | None:
        """The pin (version, when, why), or None. A pin naming a version that is gone is
        refused loudly rather than ignored: the service would otherwise serve another model
        than the person chose."""
        path = self.root / PIN
        if not path.is_file():
            return None
        pin: dict[str, Any] = json.loads(path.read_text())
        if pin.get("version") not in self.versions():
            raise ModelStoreError(f"{path} pins version {pin.get('version')!r}, not in {self.root}")
        return pin

    def pin(self, version: str, reason: str, now: datetime) -> dict[str, Any]:
        """Put `version` in use until `unpin`, whatever retraining adds meanwhile (a rollback).
        Its model file must still be there (`prune` keeps a pinned version's)."""
        folder = self._folder(version)
        if not (folder / MODEL).is_file():
            raise ModelStoreError(f"cannot pin {version}: its model file was pruned")
        pin = {"version": version, "pinned_at": now.isoformat(timespec="seconds"), "reason": reason}
        partial = self.root / f".{PIN}.partial"
        partial.write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
        os.replace(partial, self.root / PIN)  # atomic: a service reads the old pin or the new
        return pin

    def unpin(self) -> dict[str, Any] | None:
        """Back to the newest promoted version; the pin that was lifted, or None."""
        path = self.root / PIN
        if not path.is_file():
            return None
        pin: dict[str, Any] = json.loads(path.read_text())
        path.unlink()
        return pin

    def next_version(self) -> str:
        numbers = [int(v) for v in self.versions() if v.isdigit()]
        return f"{(max(numbers) if numbers else 0) + 1:04d}"

    def save(self, scorer: LearnedScorer, manifest: dict[str, Any]) -> str:
        """Write the version in a hidden folder, then rename it into place: a running service
        (`NewestModel`) never sees a version half written, whenever it looks."""
        version = self.next_version()
        folder = self.root / version
        partial = self.root / f".{version}.partial"
        if partial.exists():
            shutil.rmtree(partial)  # left by a training killed mid-write
        partial.mkdir(parents=True)
        scorer.version = version
        payload = pickle.dumps(scorer)
        (partial / MODEL).write_bytes(payload)
        manifest = {**manifest, "version": version, "sha256": hashlib.sha256(payload).hexdigest()}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        try:
            partial.rename(folder)
        except OSError as exc:  # another training saved this version number first
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelStoreError(f"cannot save model version {version}: {exc}") from None
        return version

    def prune(self, keep: int) -> list[str]:
        """Delete the model files of all but the newest `keep` versions and the one in use
        (`serving`, older when the gate turned the newer ones down); their manifests stay, so
        the audit trail's version names still say what each model was trained on and how it
        validated. Returns the versions pruned now."""
        if keep < 1:
            raise ValueError("keep at least the newest version")
        pruned = []
        in_use = self.serving()
        for version in self.versions()[:-keep]:
            model = self.root / version / MODEL
            if version == in_use:
                continue
            if model.is_file():
                model.unlink()
                pruned.append(version)
        return pruned

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        folder = self._folder(version)
        loaded: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
        return loaded

    def load(self, version: str | None = None) -> LearnedScorer:
        """A version's scorer; by default the one in use (`serving`)."""
        if version is None and self.versions():
            version = self.serving()
            if version is None:
                raise ModelStoreError(f"no version in {self.root} was promoted by the gate")
        folder = self._folder(version)
        manifest = self.manifest(folder.name)
        if manifest.get("features") != list(FEATURE_NAMES):
            raise ModelStoreError(
                f"{folder} was trained on other features than this dunwell computes "
                f"({len(manifest.get('features') or [])} vs {len(FEATURE_NAMES)}): retrain it "
                "with dunwell scoring train"
            )
        if not (folder / MODEL).is_file():
            raise ModelStoreError(
                f"{folder}: its model file was pruned (DUNWELL_MODEL_KEEP keeps the newest "
                "versions' files; every manifest stays): use a newer version"
            )
        payload = (folder / MODEL).read_bytes()
        if hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
            raise ModelStoreError(f"{folder / MODEL} does not match its manifest's sha256")
        scorer = pickle.loads(payload)  # noqa: S301 - our own file, hash-checked
        if not isinstance(scorer, LearnedScorer):
            raise ModelStoreError(f"{folder / MODEL} is not a dunwell retry model")
        if base_counts_dead_cards(manifest):
            log.warning(
                "scoring.model_base_counts_dead_cards",
                version=folder.name,
                fix="retrain it: dunwell scoring train",
            )
        return scorer

    def _folder(self, version: str | None) -> Path:
        versions = self.versions()
        if not versions:
            raise ModelStoreError(f"no model in {self.root} (train one: dunwell scoring train)")
        if version is None:
            return self.root / versions[-1]
        if version not in versions:
            raise ModelStoreError(f"no model version {version!r} in {self.root} (have {versions})")
        return self.root / version


def load_latest(root: Path | None) -> LearnedScorer | None:
    """The model in use in `root`, or None when there is none (cold start)."""
    if root is None:
        return None
    store = ModelStore(root)
    return store.load() if store.serving() else None
