"""`dunwell history` and `dunwell scoring`: import past attempts, train and show retry models.

    dunwell history import FILE          validate and keep past attempts (bad rows reported)
    dunwell scoring train                train on every imported history file; a new version
    dunwell scoring train --history FILE train on one file directly
    dunwell scoring train --tenant T --every 24h
                                         retrain on the tenant's own attempts every day
    dunwell scoring show [--version V] [--tenant T]
                                         a model's manifest: metrics, calibration, importances
    dunwell scoring versions|pin|unpin   which version is in use; a rollback (cli_model_versions)

Models and imported history live under DUNWELL_MODEL_DIR (default ./models): `history/` holds
the imported files, `0001/`, `0002/`, ... the versions trained on them, `tenants/T/0001/`, ...
those trained on tenant T's own attempts, which time T's retries only. See docs/scoring.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dunwell.settings import Settings

if TYPE_CHECKING:
    from dunwell.scoring.retrain import Saved  # scikit-learn only when it trains

history_app = typer.Typer(
    help="Past charge attempts, the model's training data.", no_args_is_help=True
)
scoring_app = typer.Typer(help="The learned retry model.", no_args_is_help=True)
log = structlog.get_logger(__name__)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ModelDir = Annotated[
    Path | None,
    typer.Option(help="models and imported history (default: DUNWELL_MODEL_DIR or ./models)"),
]


TenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant", help="the models trained on this tenant's own attempts (scoring train --tenant)"
    ),
]


def _root(model_dir: Path | None) -> Path:
    return model_dir or Settings().model_dir or Path("models")


def _models(model_dir: Path | None, tenant: str | None) -> Path:
    """The folder of the versions in question: a tenant's own, or those trained on imports."""
    from dunwell.scoring.store import tenant_model_dir

    root = _root(model_dir)
    return root if tenant is None else tenant_model_dir(root, tenant)


def register(app: typer.Typer) -> None:
    import dunwell.cli_model_versions  # noqa: F401 - adds `scoring versions|pin|unpin`

    app.add_typer(history_app, name="history")
    app.add_typer(scoring_app, name="scoring")
    app.command("backtest")(backtest_command)


def backtest_command(
    history: Annotated[Path, typer.Option(help="past attempts, CSV (docs/scoring.md)")],
    policy: Annotated[str, typer.Option(help="a policy name (dunwell policy list) or a YAML file")],
    version: Annotated[
        str | None, typer.Option(help="model version (default: the one in use)")
    ] = None,
    model_dir: ModelDir = None,
    tenant: TenantOption = None,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Replay past failures under a candidate policy, counterfactually, with the learned model."""
    from dunwell.domain.policy import PolicyError
    from dunwell.policies import load_policies, load_policy_file
    from dunwell.scoring.backtest import backtest
    from dunwell.scoring.history import HistoryError, read_history
    from dunwell.scoring.store import ModelStore, ModelStoreError

    try:
        if policy.endswith((".yaml", ".yml")) or Path(policy).is_file():
            candidate = load_policy_file(Path(policy))
        else:
            candidate = load_policies(Settings().policy_dir)[policy]
    except KeyError:
        err.print(f"unknown policy {policy!r} (see: dunwell policy list)", markup=False)
        raise typer.Exit(2) from None
    except PolicyError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    try:
        rows, bad = read_history(history)
        scorer = ModelStore(_models(model_dir, tenant)).load(version)
    except (HistoryError, ModelStoreError) as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    if bad:
        err.print(f"{history}: {len(bad)} bad rows left out (dunwell history import shows why)")
    result = backtest(rows, candidate, scorer, seed)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    past, new, change = result["past_schedule"], result["candidate_policy"], result["change"]
    low_high = change["revenue_lift_90pct"] or [0.0, 0.0]
    lines = [
        f"{result['cases']} past cases, model {result['model']}, policy {result['policy']}:",
        f"  as it happened: {past['recovery_rate']:.1%} recovered by retries, "
        f"{past['attempts_per_case']:.2f} attempts per case",
        f"  under the policy: {new['expected_recovery_rate']:.1%} recovered by retries, "
        f"{new['expected_attempts_per_case']:.2f} attempts per case",
        f"  revenue recovered by retries: {change['revenue_lift'] or 0:+.1%} "
        f"(90% interval {low_high[0]:+.1%} to {low_high[1]:+.1%})",
    ]
    if change["all_revenue_lift"] is not None:
        low, high = change["all_revenue_lift_90pct"] or [0.0, 0.0]
        paid = result["observed"]["paid_by_the_customer"]
        lines.append(
            f"  all recovered revenue ({paid} cases the customer paid included): "
            f"{change['all_revenue_lift']:+.1%} (90% interval {low:+.1%} to {high:+.1%})"
        )
    lines.append("  assumptions: " + "; ".join(result["assumptions"]))
    out.print("\n".join(lines), markup=False)


@history_app.command("import")
def history_import(
    file: Annotated[
        Path, typer.Argument(help="CSV or .parquet, one row per charge (docs/scoring.md)")
    ],
    model_dir: ModelDir = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="also write the bad rows' line (CSV) or row (Parquet) numbers here"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary")] = False,
) -> None:
    """Validate past attempts and keep the good rows; every bad row is reported, none kept."""
    from dunwell.scoring.history import HistoryError, read_history, write_history

    try:
        rows, bad = read_history(file)
    except HistoryError as exc:
        err.print(f"[red]cannot import[/]: {exc}", markup=True)
        raise typer.Exit(2) from None
    target = _root(model_dir) / "history"
    kept = 0
    saved: Path | None = None
    if rows:
        existing = sorted(target.glob("import-*.csv")) if target.is_dir() else []
        saved = target / f"import-{len(existing) + 1:04d}.csv"
        kept = write_history(saved, rows)
    if rejects is not None:
        unit = bad[0].unit if bad else "line"
        rejects.write_text(
            f"{unit},reason\n"
            + "".join(f'{b.line},"{b.reason.replace(chr(34), chr(39))}"\n' for b in bad)
        )
    summary = {
        "file": str(file),
        "kept": kept,
        "rejected": len(bad),
        "saved_as": str(saved) if saved else None,
        "bad_rows": [{b.unit: b.line, "reason": b.reason} for b in bad],
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        out.print(
            f"kept {kept} rows" + (f" in {saved}" if saved else "") + f", rejected {len(bad)}"
        )
        for b in bad[:50]:
            err.print(f"  {b.unit} {b.line}: {b.reason}", markup=False)
        if len(bad) > 50:
            err.print(f"  ... and {len(bad) - 50} more (--rejects FILE lists them all)")
    if not rows:
        raise typer.Exit(1)


@scoring_app.command("train")
def scoring_train(
    history: Annotated[
        list[Path] | None,
        typer.Option(help="history CSV to train on (repeatable); default: every imported file"),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="train on the attempts dunwell made for this tenant (DUNWELL_DATABASE_URL), "
            "besides any --history file; the versions go to the tenant's own folder and time "
            "its retries only"
        ),
    ] = None,
    all_tenants: Annotated[
        bool,
        typer.Option(
            "--all-tenants",
            help="train every tenant whose policies use the model (align: learned) on its own "
            "attempts, each into its own folder",
        ),
    ] = False,
    days: Annotated[
        int,
        typer.Option(
            min=1, max=3650, help="with --tenant or --all-tenants: cases opened in the last N days"
        ),
    ] = 365,
    model_dir: ModelDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest")] = False,
    every: Annotated[
        str | None,
        typer.Option(
            help="retrain on a schedule, every DURATION (30s, 24h, 7d) until stopped; a round "
            "whose history is the newest model's adds no version, a failed round is logged "
            "and the next one tries again"
        ),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="with --every: stop after N rounds")
    ] = None,
    no_gate: Annotated[
        bool,
        typer.Option(
            "--no-gate",
            help="put the new version in use even if it predicts the attempts since the "
            "model in use worse than that model does (the gate's verdict is still recorded)",
        ),
    ] = False,
) -> None:
    """Train a new model version on the history; its validation metrics go beside it.

    It times retries only if the promotion gate passes it: on the attempts made since the
    model in use was trained, the new training must predict no worse (log loss, 2%
    tolerance). A version turned down is kept for the record; exit code 1."""
    from dunwell.scoring.retrain import RoundFailed  # scikit-learn only when it trains

    if rounds is not None and every is None:
        err.print("--rounds needs --every")
        raise typer.Exit(2)
    if all_tenants and (tenant is not None or history):
        err.print("--all-tenants trains each tenant on its own attempts: no --tenant or --history")
        raise typer.Exit(2)
    seconds = None if every is None else _seconds(every)
    if all_tenants:
        one_round = _all_tenants_round(_root(model_dir), days, as_json, gate=not no_gate)
        if not _schedule(one_round, seconds, rounds):
            raise typer.Exit(1)  # once (from cron): a tenant failed or was turned down
        return
    root = _models(model_dir, tenant)  # with --tenant, only its own attempts and --history
    if seconds is None:
        try:
            saved = _train_round(
                root, history, tenant, days, skip_unchanged=False, gate=not no_gate
            )
        except RoundFailed as exc:
            err.print(str(exc), markup=False)
            raise typer.Exit(2) from None
        if saved is not None:
            _print_version(root, saved.version, as_json)
            if not _said_in_use(saved):
                raise typer.Exit(1)
        return

    def one(done: int) -> bool:
        try:
            saved = _train_round(root, history, tenant, days, skip_unchanged=True, gate=not no_gate)
        except RoundFailed as exc:
            log.error("scoring.retrain_failed", round=done, error=str(exc))
            err.print(f"round {done}: {exc}; the model in use stays", markup=False)
            return False
        if saved is None:
            log.info("scoring.retrain_skipped", round=done, reason="no new attempts")
            err.print(
                f"round {done}: no attempt added since the newest model; no new version",
                markup=False,
            )
            return True
        log.info("scoring.retrained", round=done, version=saved.version)
        _print_version(root, saved.version, as_json)
        return _said_in_use(saved)

    _schedule(one, seconds, rounds)


def _seconds(every: str) -> float:
    from dunwell.domain.durations import parse_duration

    text = every.strip()
    try:  # a policy's durations, or seconds (a schedule in tests and demos)
        seconds = float(text[:-1]) if text[:-1].isdigit() and text.endswith("s") else None
        seconds = parse_duration(text).total_seconds() if seconds is None else seconds
    except ValueError as exc:
        err.print(f"--every: {exc} (or seconds, like 30s)")
        raise typer.Exit(2) from None
    if seconds <= 0:
        err.print("--every must be longer than zero")
        raise typer.Exit(2)
    return seconds


def _said_in_use(saved: Saved) -> bool:
    """Tell on stderr whether a new version is in use (the gate's verdict); False if not."""
    if saved.promoted:
        err.print(f"version {saved.version} {saved.gate['reason']}; it is in use", markup=False)
        return True
    err.print(
        f"version {saved.version} {saved.gate['reason']}; version {saved.gate['champion']} "
        "stays in use (--no-gate puts it in use anyway)",
        markup=False,
    )
    return False


def _all_tenants_round(
    root: Path, days: int, as_json: bool, *, gate: bool
) -> Callable[[int], bool]:
    """One round over every learning tenant (scoring/retrain.py); each tenant's outcome on
    stderr, and one JSON object a round on stdout with --json. False: a tenant failed (not
    one with too few attempts yet, which is normal), the gate turned a tenant's new version
    down, or the database could not be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from dunwell.bootstrap import build
    from dunwell.scoring.retrain import retrain_tenants

    def one(done: int) -> bool:
        services = build(Settings())
        try:
            outcomes = retrain_tenants(
                root,
                services.sessions,
                services.policies.policies,
                services.policies.default_name,
                days,
                services.clock.now(),
                services.settings.model_keep,
                gate=gate,
            )
        except SQLAlchemyError as exc:
            log.error("scoring.retrain_failed", round=done, error=str(exc))
            err.print(f"round {done}: cannot read the tenants: {exc}", markup=False)
            return False
        finally:
            services.close()
        texts = {name: outcome.text for name, outcome in outcomes.items()}
        if as_json:
            typer.echo(json.dumps({"round": done, "tenants": texts}, sort_keys=True))
        if not outcomes:
            err.print(f"round {done}: no tenant's policy uses the model (align: learned)")
        for name, text in texts.items():
            err.print(f"round {done}: {name}: {text}", markup=False)
        return all(outcome.status not in ("failed", "rejected") for outcome in outcomes.values())

    return one


def _schedule(one: Callable[[int], bool], seconds: float | None, rounds: int | None) -> bool:
    """Train, wait, train again (once without `seconds`). A round that fails leaves the
    model in use as it is (the service keeps the version in use that loads), so the schedule
    goes on; only a setting that can never work (no history configured, an unknown tenant)
    stops it, exit code 2. Saving is atomic, so stopping the process at any moment leaves no
    half version. Returns whether the last round went well."""
    import time

    done, ok = 0, True
    try:
        while True:
            done += 1
            ok = one(done)
            if seconds is None or (rounds is not None and done >= rounds):
                return ok
            time.sleep(seconds)
    except KeyboardInterrupt:
        err.print(f"stopped after {done} round(s)")
    return ok


def _print_version(root: Path, version: str | None, as_json: bool) -> None:
    from dunwell.scoring.store import ModelStore

    if version is None:
        return
    manifest = ModelStore(root).manifest(version)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        _show(manifest)


def _train_round(
    root: Path,
    history: list[Path] | None,
    tenant: str | None,
    days: int,
    *,
    skip_unchanged: bool,
    gate: bool,
) -> Saved | None:
    """One training: the new version and the gate's verdict, or None when `skip_unchanged`
    and the history is the one the newest model learned from. Raises `RoundFailed` when no
    model can be made from what is there now; exits (code 2) on a setting that will never
    work."""
    from dunwell.scoring.history import HistoryError, read_history
    from dunwell.scoring.retrain import RoundFailed, train_version

    imported = [] if tenant else sorted((root / "history").glob("*.csv"))
    files = list(history or imported)
    if not files and not tenant:
        err.print(
            "no history: import some first (dunwell history import FILE), pass --history, "
            "or train on a tenant's own attempts with --tenant"
        )
        raise typer.Exit(2)
    rows = [] if tenant is None else _tenant_history(tenant, days)
    from_db = len(rows)
    for file in files:
        try:
            good, bad = read_history(file)
        except HistoryError as exc:
            raise RoundFailed(f"cannot read: {exc}") from None
        if bad:
            err.print(f"{file}: {len(bad)} bad rows left out (dunwell history import shows why)")
        rows.extend(good)
    extra: dict[str, Any] = {"history_files": [str(f) for f in files]}
    if tenant is not None:
        extra["history_tenant"] = {"tenant": tenant, "days": days, "attempts": from_db}
    keep = Settings().model_keep
    return train_version(root, rows, extra, skip_unchanged=skip_unchanged, keep=keep, gate=gate)


def _tenant_history(tenant: str, days: int) -> list[Any]:
    """The tenant's own attempts over the last `days`, from the database dunwell runs on."""
    from sqlalchemy.exc import SQLAlchemyError

    from dunwell.bootstrap import build
    from dunwell.scoring.retrain import RoundFailed, tenant_history
    from dunwell.store.tables import Tenant

    services = build(Settings())
    try:
        try:
            with services.sessions() as session:
                known = session.get(Tenant, tenant) is not None
        except SQLAlchemyError as exc:
            raise RoundFailed(f"cannot read the tenant's attempts: {exc}") from None
        if not known:
            err.print(f"[red]cannot train[/]: no tenant {tenant!r} in this database")
            raise typer.Exit(2)
        return tenant_history(services.sessions, tenant, days, services.clock.now())
    finally:
        services.close()


@scoring_app.command("show")
def scoring_show(
    version: Annotated[str | None, typer.Option(help="default: the newest")] = None,
    model_dir: ModelDir = None,
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest")] = False,
    chart: Annotated[
        Path | None,
        typer.Option(help="also write an HTML page: calibration plot and feature importances"),
    ] = None,
) -> None:
    """A model version's manifest: rows, AUC, calibration, feature importances."""
    from dunwell.scoring.store import ModelStore, ModelStoreError

    store = ModelStore(_models(model_dir, tenant))
    try:
        manifest = store.manifest(version)
    except ModelStoreError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    if chart is not None:
        from dunwell.scoring.chart import model_page

        chart.write_text(model_page(manifest), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        _show(manifest)


def _show(manifest: dict[str, Any]) -> None:
    from dunwell.scoring.model import base_counts_dead_cards  # loaded already by the callers

    v = manifest["validation"]
    auc = "-" if v["auc"] is None else f"{v['auc']:.3f}"
    out.print(
        f"model {manifest['version']}: {manifest['rows']} attempts ({manifest['approved']} "
        f"approved) of {manifest['cases']} cases, {manifest['history_from'][:10]} to "
        f"{manifest['history_to'][:10]}; out-of-time validation on {v['rows']} attempts: "
        f"AUC {auc}, Brier {v['brier']:.4f} (base rate {v['base_rate']:.3f})"
    )
    left_out = manifest.get("rows_left_out_customer_action")  # models before 7 Dec 2026 lack it
    if left_out:
        out.print(
            f"{left_out} charges in lanes only the customer can fix (after they authenticated "
            "or changed the card) are in the history but not learned from: they succeed "
            "because the customer acted, not because of the hour"
        )
    per_attempt = manifest.get("recovered_per_attempt_minor") or {}  # older models lack it
    if per_attempt:
        amounts = ", ".join(f"{minor} {cur} minor units" for cur, minor in per_attempt.items())
        out.print(
            "recovered per attempt in this history, where a retry is the remedy "
            f"(the base of timing.learned_min_value_share): {amounts}"
        )
        if base_counts_dead_cards(manifest):
            out.print(
                "[yellow]this model's base also counts charges on cards only the customer "
                "could fix (trained before 5 December 2026), so its value bar is lower than "
                "the policies' shares were set for: retrain it (dunwell scoring train)[/]"
            )
    gate = manifest.get("gate")  # versions trained before the gate have none
    if gate:
        style = "green" if gate["promoted"] else "red"
        out.print(f"promotion gate: [{style}]{escape(gate['reason'])}[/]")
    depth = manifest.get("depth") or {}  # the same
    beyond = [
        f"{lane}: x{d['decay_per_attempt_beyond']:.2f} per attempt beyond attempt "
        f"{d['deepest_attempt']}"
        for lane, d in depth.items()
        if d["decay_per_attempt_beyond"] < 1
    ]
    if beyond:
        out.print("deeper than this history (probabilities scaled down): " + "; ".join(beyond))
    calibration = Table(title="calibration (validation)")
    for column in ("predicted p", "rows", "mean predicted", "observed"):
        calibration.add_column(column, justify="right")
    for b in v["calibration"]:
        calibration.add_row(
            f"{b['from']:.1f}-{b['to']:.1f}",
            str(b["rows"]),
            f"{b['predicted']:.3f}",
            f"{b['observed']:.3f}",
        )
    out.print(calibration)
    importances = Table(title="permutation importance (drop in validation AUC)")
    importances.add_column("feature")
    importances.add_column("importance", justify="right")
    ranked = sorted(v["feature_importances"].items(), key=lambda item: -item[1])
    for name, value in ranked:
        importances.add_row(name, f"{value:.4f}")
    out.print(importances)
