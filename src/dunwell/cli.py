"""The `dunwell` command: run, db, policy, tenant, cases, deadletters, simulate."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dunwell.cli_codes import codes_app
from dunwell.cli_providers import app as providers_app
from dunwell.cli_routing import app as routing_app
from dunwell.cli_scoring import register as register_scoring
from dunwell.cli_webhooks import app as webhooks_app
from dunwell.domain.policy import PolicyError
from dunwell.settings import Settings

app = typer.Typer(help="dunwell: recover failed subscription payments.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
policy_app = typer.Typer(help="Recovery policies.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants and API keys.", no_args_is_help=True)
cases_app = typer.Typer(help="Recovery cases.", no_args_is_help=True)
dead_app = typer.Typer(
    help="Dead letters: input kept for inspection and replay.", no_args_is_help=True
)


@app.callback()
def _log_to_stderr() -> None:
    """Every command logs warnings and errors on stderr: stdout carries its output, often one
    JSON document. Long-running commands (`run`, `worker`) and `simulate` set their own."""
    import logging

    from dunwell.logging_setup import configure_logging

    try:
        fmt = Settings().log_format
    except Exception:  # a bad setting is the command's to report, in its own words
        fmt = "json"
    configure_logging(fmt, logging.WARNING)


app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(tenant_app, name="tenant")
app.add_typer(cases_app, name="cases")
sim_app = typer.Typer(help="Simulated counterparts for tests and chaos runs.", no_args_is_help=True)
app.add_typer(dead_app, name="deadletters")
app.add_typer(sim_app, name="sim")
app.add_typer(codes_app, name="codes")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(providers_app, name="providers")
app.add_typer(routing_app, name="routing")
register_scoring(app)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
DEMO_TENANT = "demo"


def _services(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    from dunwell.bootstrap import build

    return build(settings or Settings())


def _start(settings: Settings):  # type: ignore[no-untyped-def]
    """A long-running process's start: logging, migrations, the engine's parts."""
    from dunwell.logging_setup import configure_logging
    from dunwell.store.migrate import upgrade

    configure_logging(settings.log_format)
    upgrade(settings.database_url)
    if settings.model_dir is None:  # where `dunwell scoring train` puts models by default
        settings = settings.model_copy(update={"model_dir": Path("models")})
    try:
        return _services(settings)
    except PolicyError as exc:
        err.print(f"[red]cannot start[/]: {exc}")
        raise typer.Exit(1) from None


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="default: DUNWELL_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: DUNWELL_PORT or 8000")] = None,
) -> None:
    """Migrate, then serve the API and run the worker in one process (the embedded default)."""
    import uvicorn

    from dunwell.api.app import create_app
    from dunwell.bootstrap import ensure_tenant

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    services = _start(settings)
    key = ensure_tenant(
        services, DEMO_TENANT, "Demo tenant", settings.api_key, policy=settings.default_policy
    )
    url = f"http://{settings.host}:{settings.port}"
    err.print(f"[bold]dunwell[/] serving on {url}  (database: {_safe_url(settings.database_url)})")
    err.print(f"demo tenant '{DEMO_TENANT}', policy '{settings.default_policy}'")
    if settings.api_key:
        err.print("API key: the one in DUNWELL_API_KEY")
    else:
        err.print(f"API key (generated; set DUNWELL_API_KEY to keep one): {key}")
    err.print(f"try: curl -H 'Authorization: Bearer <KEY>' {url}/v1/cases")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the
    # handler that was there before it: ours, a no-op, so the durable worker stops in
    # order below and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    retrainer = None
    try:
        retrainer = _retrainer(services, settings)
        with _durable_worker(services, settings, "run"):
            uvicorn.run(
                create_app(services),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                timeout_graceful_shutdown=10,
            )
    finally:
        if retrainer is not None:
            retrainer.stop()
        services.close()


def _retrainer(services, settings: Settings):  # type: ignore[no-untyped-def]
    """The embedded default retrains each learning tenant's model itself (scoring/retrain.py):
    a background thread starts `dunwell scoring train --all-tenants` as a child process each
    round; a deployment of several processes runs `dunwell scoring train --all-tenants
    --every 24h` once instead, and sets DUNWELL_RETRAIN_EVERY=off here."""
    from dunwell.domain.durations import parse_duration

    text = settings.retrain_every.strip().lower()
    if text in ("", "off"):
        return None
    try:
        every = parse_duration(text)
    except ValueError as exc:
        err.print(f"[red]cannot start[/]: DUNWELL_RETRAIN_EVERY: {exc} (or off)")
        raise typer.Exit(1) from None
    from dunwell.scoring.retrain import Retrainer, RoundInChild

    root = services.settings.model_dir or Path("models")
    retrainer = Retrainer(every, RoundInChild(root, settings.retrain_days))
    retrainer.start()
    err.print(f"retraining each learning tenant's model every {text} into {root}")
    return retrainer


@contextlib.contextmanager
def _durable_worker(services, settings: Settings, role: str):  # type: ignore[no-untyped-def]
    """Run due actions on DBOS in this process, under an executor id held exclusively."""
    from dunwell.engine import durable
    from dunwell.engine.worker import (
        ExecutorIdInUse,
        default_executor_id,
        dispatch_options,
        exclusive_executor,
    )

    executor_id = default_executor_id(settings, role)
    registry = services.runner.providers
    providers = frozenset(registry.adapters) | (
        {registry.fallback.name} if registry.fallback is not None else set()
    )
    try:
        with exclusive_executor(services, executor_id):
            durable.start(
                services,
                executor_id=executor_id,
                options=dispatch_options(settings),
                system_database=settings.dbos_system_database_url,
                providers=providers,
                system_schema=settings.dbos_schema,
            )
            try:
                yield executor_id
            finally:
                durable.stop()
    except ExecutorIdInUse as exc:
        err.print(f"[red]cannot start[/]: {exc}")
        raise typer.Exit(1) from None


@app.command()
def worker(
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="executor id: stable across restarts, unique among live workers "
            "(default: DUNWELL_WORKER_ID or HOSTNAME-worker)",
        ),
    ] = None,
) -> None:
    """Run due actions (no API) beside any number of workers on one database."""
    settings = Settings()
    if worker_id:
        settings.worker_id = worker_id
    services = _start(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with _durable_worker(services, settings, "worker") as executor_id:
            err.print(
                f"[bold]dunwell worker[/] {executor_id} on {_safe_url(settings.database_url)}"
            )
            stop.wait()
            err.print("stopping: in-flight batches get 10 s, the rest resume on restart")
    finally:
        services.close()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations to DUNWELL_DATABASE_URL."""
    from dunwell.store.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    out.print(f"database at {revision}: {_safe_url(settings.database_url)}")


@policy_app.command("validate")
def policy_validate(file: Path) -> None:
    """Check a policy file; prints every problem with its path."""
    from dunwell.policies import load_policy_file

    try:
        policy = load_policy_file(file)
    except PolicyError as exc:
        err.print(f"[red]{file}: invalid policy[/]")
        for problem in exc.problems:
            err.print(f"  - {problem}")
        raise typer.Exit(1) from None
    out.print(
        f"{file}: policy '{policy.name}' version {policy.version} is valid "
        f"(digest {policy.digest}, {len(policy.lanes)} lanes)"
    )


@policy_app.command("list")
def policy_list() -> None:
    """The policies this installation loads."""
    from dunwell.policies import load_policies

    table = Table("name", "version", "digest", "description")
    for policy in load_policies(Settings().policy_dir).values():
        table.add_row(policy.name, policy.version, policy.digest, policy.description)
    out.print(table)


@tenant_app.command("create")
def tenant_create(
    tenant_id: str,
    name: Annotated[str, typer.Option()] = "",
    policy: Annotated[str, typer.Option()] = "default",
) -> None:
    """Create a tenant (or rotate its key) and print its API key once."""
    from dunwell.bootstrap import ensure_tenant

    key = ensure_tenant(_services(), tenant_id, name or tenant_id, None, policy=policy)
    out.print(key)


@tenant_app.command("assign-policy")
def tenant_assign(
    tenant_id: str, policy: str, storefront: Annotated[str | None, typer.Option()] = None
) -> None:
    """Run POLICY for a tenant, or only for one of its storefronts."""
    from dunwell.bootstrap import assign_policy

    assign_policy(_services(), tenant_id, storefront, policy)
    out.print(f"{tenant_id} {storefront or '(all storefronts)'}: {policy}")


@cases_app.command("show")
def cases_show(case_id: str, tenant: str = DEMO_TENANT) -> None:
    """Print a case as the API returns it."""
    from dunwell.api.views import case_view
    from dunwell.store.unit_of_work import UnitOfWork

    with UnitOfWork(_services().sessions) as uow:
        case = uow.cases.get(tenant, case_id)
    if case is None:
        err.print(f"no case {case_id} for tenant {tenant}")
        raise typer.Exit(1)
    out.print_json(json.dumps(case_view(case)))


@dead_app.command("list")
def deadletters_list(
    status: str | None = None,
    tenant: str | None = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Dead letters, newest first."""
    from dunwell.api.views import dead_letter_view
    from dunwell.store.unit_of_work import UnitOfWork

    with UnitOfWork(_services().sessions) as uow:
        views = [dead_letter_view(row) for row in uow.deadletters.list(tenant, status)]
    if as_json:
        out.print_json(json.dumps({"dead_letters": views}))
        return
    table = Table("id", "received", "source", "status", "error")
    table.columns[0].no_wrap = True
    for view in views:
        error = view["error"]
        problems = error.get("problems") or [{"field": "", "message": error.get("message", "")}]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)[:120]
        table.add_row(
            view["id"],
            view["received_at"][:19],
            view["source"],
            view["status"],
            f"{error.get('error')}: {summary}",
        )
    out.print(table)


@dead_app.command("replay")
def deadletters_replay(
    dead_letter_id: str,
    body_file: Annotated[
        Path | None, typer.Option(help="replay this corrected body instead")
    ] = None,
) -> None:
    """Parse and ingest a dead letter again; an already processed event is not processed twice."""
    from dunwell.engine import deadletters

    body = body_file.read_text(encoding="utf-8") if body_file else None
    try:
        outcome = deadletters.replay(_services().ingest, dead_letter_id, body=body)
    except deadletters.DeadLetterNotFound:
        err.print(f"no dead letter {dead_letter_id}")
        raise typer.Exit(1) from None
    if not outcome.ok or outcome.result is None:
        err.print(f"[red]replay failed[/]: {json.dumps(outcome.error)}")
        raise typer.Exit(1)
    r = outcome.result
    out.print(
        json.dumps(
            {
                "event_id": r.event_id,
                "duplicate": r.duplicate,
                "outcome": r.outcome,
                "case_ids": r.case_ids,
            }
        )
    )


@app.command()
def simulate(
    customers: Annotated[
        int, typer.Option(min=1, max=100_000, help="customers in the world")
    ] = 200,
    days: Annotated[int, typer.Option(min=1, max=3650, help="virtual days to run")] = 45,
    seed: Annotated[int, typer.Option(help="the same seed gives the same numbers")] = 1,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy", help="a policy to run (repeatable); default: default and baseline-fixed"
        ),
    ] = None,
    world: Annotated[
        str,
        typer.Option(
            help="builtin:NAME (basic, realistic, ...) or MODULE:FACTORY, a factory called "
            "with seed=, customers=, days=, start= (see docs/simulation.md)"
        ),
    ] = "builtin:basic",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    arms: Annotated[
        str | None,
        typer.Option(
            help="policies to compare, comma-separated (adds to --policy), e.g. "
            "baseline-fixed,default,smart"
        ),
    ] = None,
    train_days: Annotated[
        int,
        typer.Option(
            min=0,
            max=3650,
            help="first run baseline-fixed for N days on other customers, train the retry "
            "model on what it saw, then evaluate every arm with it (0: no training)",
        ),
    ] = 0,
    train_customers: Annotated[
        int | None,
        typer.Option(
            min=1, max=100_000, help="customers in the training period (default: --customers)"
        ),
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="also save the trained model as a version here")
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option(help="write a self-contained HTML chart of recovery over time per arm"),
    ] = None,
    store: Annotated[
        str,
        typer.Option(
            help="where the engine keeps its state: memory (fast) or sqlite (a migrated file "
            "per run, as deployed); the results are the same, byte for byte"
        ),
    ] = "memory",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="policies run at once, each in its own process (default: one per CPU); "
            "the results are the same, byte for byte",
        ),
    ] = None,
) -> None:
    """Run a world of failing cards through the real engine, once per policy."""
    import logging
    import time

    from dunwell.logging_setup import configure_logging
    from dunwell.policies import load_policies
    from dunwell.sim.harness import DEFAULT_POLICIES, STORES
    from dunwell.sim.harness import simulate as run_simulation
    from dunwell.sim.loading import WorldSpecError, load_world_factory
    from dunwell.sim.report import to_json, to_table

    if train_days:
        from dunwell.scoring.model import NotEnoughHistory
    else:
        NotEnoughHistory = ValueError  # noqa: N806 - never raised without training
    settings = Settings()
    # The runner logs every charge at INFO: on stdout that would corrupt the JSON document.
    configure_logging(settings.log_format, logging.WARNING)
    if store not in STORES:
        err.print(f"[red]unknown store {store}[/] (have: {', '.join(STORES)})")
        raise typer.Exit(2)
    listed = list(policy or []) + [a.strip() for a in (arms or "").split(",") if a.strip()]
    names = list(dict.fromkeys(listed or DEFAULT_POLICIES))
    unknown = [name for name in names if name not in load_policies(settings.policy_dir)]
    if unknown:
        err.print(f"[red]unknown policy {', '.join(unknown)}[/] (see: dunwell policy list)")
        raise typer.Exit(2)
    try:
        factory = load_world_factory(world)
    except WorldSpecError as exc:
        err.print(f"bad world: {exc}", markup=False)
        raise typer.Exit(2) from None
    started = time.perf_counter()
    try:
        result = run_simulation(
            customers,
            days,
            seed,
            names,
            world=factory,
            train_days=train_days,
            model_dir=model_dir,
            train_customers=train_customers,
            store=store,
            workers=workers or os.cpu_count() or 1,
        )
    except WorldSpecError as exc:  # the factory ran, but did not give a World
        err.print(f"bad world: {exc}", markup=False)
        raise typer.Exit(2) from None
    except NotEnoughHistory as exc:  # too little history in the training period
        err.print(f"cannot train: {exc}", markup=False)
        raise typer.Exit(2) from None
    result["parameters"]["world"] = world
    if chart is not None:
        from dunwell.sim.chart import to_html

        chart.write_text(to_html(result), encoding="utf-8")
    if as_json:
        typer.echo(to_json(result))
    else:
        table = to_table(result)
        table.caption = f"simulated in {time.perf_counter() - started:.1f}s of wall time"
        out.print(table)
    broken = {n: m["guardrail_violations"]["total"] for n, m in result["policies"].items()}
    if any(broken.values()):
        # A guardrail violation is a bug in dunwell, not a tuning result: fail loudly.
        err.print(f"[bold red]guardrail violations[/]: {broken}")
        raise typer.Exit(1)


@sim_app.command("psp")
def sim_psp(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8100,
    db: Annotated[Path, typer.Option(help="SQLite file of the processor's own ledger")] = Path(
        "sim-psp.db"
    ),
    host: str = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option(min=0, help="added to every request")] = 0.0,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="share of 5xx answers")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="seed of the error injection")] = None,
) -> None:
    """Start a simulated card processor (idempotency keys, declines, latency, 5xx)."""
    import uvicorn

    from dunwell.sim.psp.app import create_psp_app
    from dunwell.sim.psp.ledger import Ledger

    ledger = Ledger(db)
    err.print(f"sim psp on http://{host}:{port} (ledger {db}); set DUNWELL_SIM_PSP_URL to use it")
    try:
        uvicorn.run(
            create_psp_app(ledger, latency_ms, error_rate, seed),
            host=host,
            port=port,
            log_level="warning",
        )
    finally:
        ledger.close()


if __name__ == "__main__":  # pragma: no cover
    app()
