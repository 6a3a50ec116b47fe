"""Servers for the ingest benchmark, each in its own process: `dunwell` or `bare`.

`bare` is the yardstick: a FastAPI endpoint that parses the same JSON and inserts one row,
nothing else. `dunwell` is the real API (validation, dedup, decide, plan, audit, one commit).
With WORKERS > 1 both run as that many uvicorn worker processes; dunwell then runs through
its documented multi-process mode, `uvicorn --factory dunwell.api.asgi:create`.

    python benchmarks/serve.py dunwell|bare URL PORT KEY [WORKERS]
"""

from __future__ import annotations

import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert

from dunwell.store.database import make_engine

_metadata = MetaData()
_events = Table(
    "bench_bare_events",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(255), unique=True),
    Column("payload", JSON),
)


def bare_app(url: str | None = None) -> FastAPI:
    engine = make_engine(url or os.environ["BENCH_BARE_URL"])
    app = FastAPI()

    def store(payload: dict[str, object]) -> None:
        with engine.begin() as connection:
            connection.execute(insert(_events).values(event_id=payload["id"], payload=payload))

    @app.post("/v1/events")
    async def post(request: Request) -> JSONResponse:
        payload = json.loads(await request.body())
        await run_in_threadpool(store, payload)
        return JSONResponse({"event_id": payload["id"]}, status_code=201)

    return app


def prepare_bare(url: str) -> None:
    engine = make_engine(url)
    _metadata.drop_all(engine)
    _metadata.create_all(engine)
    engine.dispose()


def prepare_dunwell(url: str, key: str) -> None:
    from dunwell.bootstrap import build, ensure_tenant
    from dunwell.settings import Settings
    from dunwell.store.migrate import upgrade

    upgrade(url)
    services = build(Settings(database_url=url))
    ensure_tenant(services, "bench", "Benchmark", key, policy="default")
    services.close()


def dunwell_app(url: str) -> FastAPI:
    from dunwell.api.app import create_app
    from dunwell.bootstrap import build
    from dunwell.settings import Settings

    return create_app(build(Settings(database_url=url)))


if __name__ == "__main__":
    kind, url, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    options = dict(host="127.0.0.1", port=port, log_level="warning", access_log=False)
    if kind == "bare":
        prepare_bare(url)
    else:
        prepare_dunwell(url, key)
    if workers == 1:
        uvicorn.run(bare_app(url) if kind == "bare" else dunwell_app(url), **options)  # type: ignore[arg-type]
    elif kind == "bare":
        os.environ["BENCH_BARE_URL"] = url
        sys.path.insert(0, os.path.dirname(__file__))
        uvicorn.run("serve:bare_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    else:
        os.environ["DUNWELL_DATABASE_URL"] = url
        uvicorn.run("dunwell.api.asgi:create", factory=True, workers=workers, **options)  # type: ignore[arg-type]
