"""Durable execution of due actions on DBOS Transact (SQLite or PostgreSQL).

The action rows stay the outbox: the plan of every case is rows with due times, so a
million open cases cost rows, not threads. DBOS carries them out:

- a DBOS schedule fires every second, once across all processes (DBOS deduplicates the
  tick by its workflow id), onto a queue that runs one tick at a time;
- the tick hands due rows over in batches (one step: records the batch's workflow id on
  the rows), then enqueues one `run_actions` workflow per batch on the queue of the
  batch's provider (charges) or on the messages queue, under that workflow id;
- DBOS queues spread the batches over the worker processes (`worker_concurrency`,
  rate limits per provider) and recover the workflows of a killed process when it comes
  back under the same executor id;
- `run_actions` has two steps: `start` (decide: ActionDue through ingest) and `finish`
  (carry out the effects, record the outcomes). Both are idempotent in the database, and
  a charge re-sent after a crash carries the attempt id as its idempotency key.

Claiming, leases and recovery are DBOS's; dunwell only writes which workflow carries a
row, so a hand-off that never reached DBOS (a crash between the two) is found and handed
over again under the same id.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from dbos import DBOS, DBOSConfig, SetWorkflowID
from sqlalchemy import Engine, create_engine, event, text

from dunwell.bootstrap import Services
from dunwell.store.unit_of_work import UnitOfWork

log = structlog.get_logger("dunwell.durable")

DISPATCH_QUEUE = "dunwell-dispatch"
MESSAGES_QUEUE = "dunwell-messages"
SCHEDULE_NAME = "dunwell-dispatch-tick"
# Queued and delayed DBOS work is tagged with an application version; pinning it keeps
# work handed over before a deploy runnable after it (the workflows' contract is stable:
# row ids in, idempotent steps). Bump only with a migration of in-flight work.
APPLICATION_VERSION = "dunwell-actions-1"
_FAILED = frozenset({"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})


def charges_queue(provider: str) -> str:
    return f"dunwell-charges-{provider}"


@dataclass(frozen=True)
class DispatchOptions:
    batch_size: int = 20  # rows per workflow: one DBOS checkpoint per step per batch
    max_per_tick: int = 5000
    charge_concurrency: int = 8  # batches of one provider in flight per worker process
    message_concurrency: int = 4
    polling_interval_seconds: float = 0.2
    # {provider: (limit, period seconds)}: across all workers, enforced by the DBOS queue.
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    # A hand-off older than this whose rows are still open is handed over again (same id).
    redispatch_after: timedelta = timedelta(minutes=2)


@dataclass
class _Runtime:
    services: Services
    options: DispatchOptions
    providers: frozenset[str]
    system_engine: Engine | None = None  # ours: DBOS does not dispose an engine it was given


_runtime: _Runtime | None = None
_lock = threading.Lock()


def _rt() -> _Runtime:
    if _runtime is None:
        raise RuntimeError("the durable worker is not started in this process")
    return _runtime


def system_database_url(database_url: str) -> str:
    """DBOS's own tables: a schema of the same PostgreSQL database, or a sibling SQLite file
    (a second file keeps DBOS's writes from queueing behind the engine's on one lock)."""
    if database_url.startswith("sqlite"):
        base, dot, suffix = database_url.rpartition(".")
        if dot and "/" not in suffix:
            return f"{base}.dbos.{suffix}"
        return f"{database_url}.dbos"
    return database_url


def _system_engine(url: str) -> Engine:
    """DBOS's engine: ours for SQLite brings WAL (DBOS leaves the journal mode alone, and
    WAL measured ~45% faster here); for PostgreSQL, the psycopg 3 driver we ship."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_wal)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# --- workflows and steps (registered at import; names are part of the stored contract) ---


@DBOS.workflow(name="dunwell.dispatch_tick")
def dispatch_tick(scheduled_at: datetime, context: Any) -> int:
    batches = hand_off()
    for queue_name, workflow_id, action_ids in batches:
        _enqueue(queue_name, workflow_id, action_ids)
    return len(batches)


@DBOS.step(name="dunwell.hand_off")
def hand_off() -> list[tuple[str, str, list[int]]]:
    """Give due rows to workflows: returns (queue, workflow id, row ids) per batch."""
    rt = _rt()
    now = rt.services.clock.now()
    stamp = int(now.timestamp() * 1000)
    batches: list[tuple[str, str, list[int]]] = []
    with UnitOfWork(rt.services.sessions) as uow:
        # Hand-offs that never started (the enqueue was lost, or its worker is gone): the
        # same workflow id again; DBOS returns the existing workflow if there is one.
        for workflow_id, ids in uow.actions.stale_dispatches(
            now - rt.options.redispatch_after, rt.options.max_per_tick
        ).items():
            queue_name = workflow_id.split("|", 1)[0]
            status = DBOS.get_workflow_status(workflow_id)
            if status is not None and status.status in _FAILED:
                # It gave up (an error DBOS would not retry): a fresh workflow takes over.
                log.error("durable.workflow_failed", workflow_id=workflow_id, rows=ids)
                rt.services.ingest.metrics.workflows_redispatched.labels("failed").inc()
                workflow_id = f"{queue_name}|{ids[0]}|{stamp}"
            elif status is None:
                rt.services.ingest.metrics.workflows_redispatched.labels("lost").inc()
            uow.actions.dispatch(ids, workflow_id, now)  # next look in `redispatch_after`
            batches.append((queue_name, workflow_id, ids))
        # All due rows of one case go to one batch's queue (the charges queue when one of
        # them charges): a case's rows then run one after another instead of waiting on
        # each other's case lock from concurrent batches.
        by_case: dict[str, list[int]] = {}
        case_queue: dict[str, str] = {}
        for row, provider in uow.actions.undispatched(now, rt.options.max_per_tick):
            by_case.setdefault(row.case_id, []).append(row.id)
            queue_name = _queue_for(rt, row, provider)
            if case_queue.get(row.case_id, MESSAGES_QUEUE) == MESSAGES_QUEUE:
                case_queue[row.case_id] = queue_name
        # Whole cases per batch. On a rate-limited provider's queue one case per batch: the
        # DBOS limiter counts workflows started, so there it counts charges.
        open_batches: dict[str, list[int]] = {}
        for case_id, ids in by_case.items():
            queue_name = case_queue[case_id]
            batch = open_batches.setdefault(queue_name, [])
            batch.extend(ids)
            if len(batch) >= _batch_size(rt, queue_name):
                batches.append(_seal(uow, queue_name, open_batches.pop(queue_name), stamp, now))
        for queue_name, batch in open_batches.items():
            batches.append(_seal(uow, queue_name, batch, stamp, now))
        uow.commit()
    return batches


def _batch_size(rt: _Runtime, queue_name: str) -> int:
    limited = {charges_queue(p) for p in rt.options.rate_limits}
    return 1 if queue_name in limited else rt.options.batch_size


def _seal(
    uow: UnitOfWork, queue_name: str, ids: list[int], stamp: int, now: datetime
) -> tuple[str, str, list[int]]:
    workflow_id = f"{queue_name}|{ids[0]}|{stamp}"
    uow.actions.dispatch(ids, workflow_id, now)
    return queue_name, workflow_id, ids


@DBOS.workflow(name="dunwell.run_actions")
def run_actions(action_ids: list[int]) -> int:
    running = start_actions(action_ids)
    return finish_actions(running) if running else 0


@DBOS.step(name="dunwell.start_actions")
def start_actions(action_ids: list[int]) -> list[int]:
    return _rt().services.runner.start(action_ids)


@DBOS.step(name="dunwell.finish_actions")
def finish_actions(action_ids: list[int]) -> int:
    return _rt().services.runner.finish(action_ids)


def _queue_for(rt: _Runtime, row: Any, case_provider: str | None) -> str:
    """The charges queue of the provider that will be charged: the decided charge's, else the
    one routing planned for the retry, else the case's; anything else is a message."""
    charges = [e for e in row.effects if e.get("kind") == "charge"]
    if row.type != "retry" and not charges:
        return MESSAGES_QUEUE
    provider = (
        (charges[0].get("provider") if charges else None)
        or (row.params or {}).get("provider")
        or case_provider
    )
    return charges_queue(provider if provider in rt.providers else "other")


def _enqueue(queue_name: str, workflow_id: str, action_ids: list[int]) -> None:
    queue = DBOS.retrieve_queue(queue_name) or DBOS.retrieve_queue(charges_queue("other"))
    assert queue is not None, "queues are registered at start"
    with SetWorkflowID(workflow_id):
        queue.enqueue(run_actions, action_ids)


# --- the worker's life cycle ---


def start(
    services: Services,
    *,
    executor_id: str,
    options: DispatchOptions | None = None,
    system_database: str | None = None,
    providers: frozenset[str] = frozenset({"sim"}),
    system_schema: str = "dbos",
) -> None:
    """Launch DBOS in this process: it takes part in ticks and runs queued batches."""
    global _runtime
    with _lock:
        if _runtime is not None:
            raise RuntimeError("the durable worker is already started in this process")
        options = options or DispatchOptions()
        _runtime = _Runtime(services, options, providers)
        try:
            _launch(_runtime, executor_id, system_database, system_schema)
        except BaseException:
            with contextlib.suppress(Exception):
                DBOS.destroy()
            engine, _runtime = _runtime.system_engine, None
            if engine is not None:
                engine.dispose()
            raise
        log.info("durable.started", executor_id=executor_id, providers=sorted(providers))


def _launch(
    rt: _Runtime, executor_id: str, system_database: str | None, system_schema: str
) -> None:
    services, options, providers = rt.services, rt.options, rt.providers
    url = system_database or system_database_url(services.settings.database_url)
    rt.system_engine = _system_engine(url)
    config: DBOSConfig = {
        "name": "dunwell",
        "system_database_url": url,
        "system_database_engine": rt.system_engine,
        "dbos_system_schema": system_schema,
        "application_version": APPLICATION_VERSION,
        "executor_id": executor_id,
        "sys_db_pool_size": 10,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.2,
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(DISPATCH_QUEUE, global_concurrency=1, polling_interval_sec=0.2)
    DBOS.register_queue(
        MESSAGES_QUEUE,
        worker_concurrency=options.message_concurrency,
        polling_interval_sec=options.polling_interval_seconds,
    )
    for provider in sorted(providers | {"other"}):
        limit = options.rate_limits.get(provider)
        DBOS.register_queue(
            charges_queue(provider),
            worker_concurrency=options.charge_concurrency,
            limiter={"limit": limit[0], "period": limit[1]} if limit else None,
            polling_interval_sec=options.polling_interval_seconds,
        )
    if DBOS.get_schedule(SCHEDULE_NAME) is None:
        try:
            DBOS.create_schedule(
                schedule_name=SCHEDULE_NAME,
                workflow_fn=dispatch_tick,
                schedule="* * * * * *",
                queue_name=DISPATCH_QUEUE,
            )
        except Exception:  # another process created it first: that is the point
            if DBOS.get_schedule(SCHEDULE_NAME) is None:
                raise


def problem() -> str | None:
    """Why the durable worker of this process is not healthy, or None (also when none runs
    here: an API-only process does not need one)."""
    rt = _runtime
    if rt is None or rt.system_engine is None:
        return None
    try:
        with rt.system_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        return f"durable-execution database unreachable: {type(exc).__name__}"
    return None


def tick_now() -> None:
    """Fire the dispatch schedule at once (tests in virtual time, operators)."""
    DBOS.trigger_schedule(SCHEDULE_NAME)


def stop(timeout_seconds: int = 10) -> None:
    """Stop taking work; in-flight batches get `timeout_seconds` to finish. Unfinished ones
    stay PENDING in DBOS and are recovered when this executor id starts again."""
    global _runtime
    with _lock:
        if _runtime is None:
            return
        DBOS.destroy(workflow_completion_timeout_sec=timeout_seconds)
        if _runtime.system_engine is not None:
            _runtime.system_engine.dispose()
        _runtime = None
