"""`dunwell scoring versions|pin|unpin`: which model versions a folder holds, which one is in
use, and a person's rollback.

    dunwell scoring versions [--tenant T]        every version: trained when, on what, how it
                                                 validated, the gate's verdict, in use or not
    dunwell scoring pin VERSION [--tenant T]     put VERSION in use whatever retraining adds
    dunwell scoring unpin [--tenant T]           back to the newest promoted version

A running service picks a pin up within a minute (scoring/live.py); retraining goes on
meanwhile, and its gate compares each new version with the pinned one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from dunwell.cli_scoring import ModelDir, TenantOption, _models, err, out, scoring_app


@scoring_app.command("versions")
def scoring_versions(
    model_dir: ModelDir = None,
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Every model version of a folder, and which one times retries."""
    from dunwell.scoring.store import ModelStore, ModelStoreError

    store = ModelStore(_models(model_dir, tenant))
    try:
        in_use, pin = store.serving(), store.pinned()
    except (ModelStoreError, ValueError) as exc:
        err.print(f"cannot tell the version in use: {exc}", markup=False)
        raise typer.Exit(2) from None
    rows = [_row(store, version, in_use) for version in store.versions()]
    if as_json:
        typer.echo(json.dumps({"in_use": in_use, "pinned": pin, "versions": rows}, indent=2))
        return
    if not rows:
        err.print(f"no model in {store.root} (train one: dunwell scoring train)")
        return
    table = Table(title=f"model versions in {store.root}")
    for column in ("version", "trained", "attempts", "history to", "AUC", "gate", "file"):
        table.add_column(column)
    for row in rows:
        mark = (
            " (in use, pinned)" if row["in_use"] and pin else " (in use)" if row["in_use"] else ""
        )
        table.add_row(
            row["version"] + mark,
            row["trained_at"][:16],
            str(row["rows"]),
            row["history_to"][:10],
            "-" if row["auc"] is None else f"{row['auc']:.3f}",
            row["gate"],
            "kept" if row["model_file"] else "pruned",
        )
    out.print(table)


def _row(store: Any, version: str, in_use: str | None) -> dict[str, Any]:
    from dunwell.scoring.gate import promoted
    from dunwell.scoring.store import MODEL

    manifest = store.manifest(version)
    gate = manifest.get("gate") or {}
    return {
        "version": version,
        "in_use": version == in_use,
        "trained_at": manifest.get("trained_at", ""),
        "rows": manifest.get("rows"),
        "history_to": manifest.get("history_to", ""),
        "auc": (manifest.get("validation") or {}).get("auc"),
        "promoted": promoted(manifest),
        "gate": gate.get("reason", "before the gate"),
        "model_file": (store.root / version / MODEL).is_file(),
    }


@scoring_app.command("pin")
def scoring_pin(
    version: Annotated[str, typer.Argument(help="the version to put in use, e.g. 0003")],
    reason: Annotated[str, typer.Option(help="why, for whoever looks next")] = "",
    model_dir: ModelDir = None,
    tenant: TenantOption = None,
) -> None:
    """Put a version in use until `unpin`, whatever retraining adds (a rollback)."""
    from dunwell.scoring.gate import promoted
    from dunwell.scoring.store import ModelStore, ModelStoreError

    store = ModelStore(_models(model_dir, tenant))
    try:
        pin = store.pin(version, reason, datetime.now(UTC))
    except ModelStoreError as exc:
        err.print(f"cannot pin: {exc}", markup=False)
        raise typer.Exit(2) from None
    note = "" if promoted(store.manifest(version)) else " (the gate had turned it down)"
    err.print(
        f"version {version} pinned{note}: a running service uses it within a minute; "
        "retraining goes on and compares new versions with it; dunwell scoring unpin undoes it",
        markup=False,
    )
    typer.echo(json.dumps(pin, sort_keys=True))


@scoring_app.command("unpin")
def scoring_unpin(model_dir: ModelDir = None, tenant: TenantOption = None) -> None:
    """Back to the newest version the gate promoted."""
    from dunwell.scoring.store import ModelStore, ModelStoreError

    store = ModelStore(_models(model_dir, tenant))
    lifted = store.unpin()
    if lifted is None:
        err.print(f"nothing pinned in {store.root}")
        return
    try:
        in_use = store.serving()
    except ModelStoreError as exc:
        in_use = f"none ({exc})"
    err.print(f"unpinned {lifted.get('version')}; in use now: {in_use}", markup=False)
