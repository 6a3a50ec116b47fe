"""Servers for the ingest benchmark, each in its own process: `dunwell` or `bare`.

`bare` is the yardstick: a FastAPI endpoint that parses the same JSON and inserts one row,
nothing else. `dunwell` is the real API (validation, dedup, decide, plan, audit, one commit).
"""

from __future__ import annotations

import json
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert

from dunwell.store.database import make_engine


def bare_app(url: str) -> FastAPI:
    engine = make_engine(url)
    metadata = MetaData()
    events = Table(
        "bench_bare_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(255), unique=True),
        Column("payload", JSON),
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    app = FastAPI()

    def store(payload: dict[str, object]) -> None:
        with engine.begin() as connection:
            connection.execute(insert(events).values(event_id=payload["id"], payload=payload))

    @app.post("/v1/events")
    async def post(request: Request) -> JSONResponse:
        payload = json.loads(await request.body())
        await run_in_threadpool(store, payload)
        return JSONResponse({"event_id": payload["id"]}, status_code=201)

    return app


def dunwell_app(url: str, key: str) -> FastAPI:
    from dunwell.api.app import create_app
    from dunwell.bootstrap import build, ensure_tenant
    from dunwell.settings import Settings
    from dunwell.store.migrate import upgrade

    upgrade(url)
    services = build(Settings(database_url=url))
    ensure_tenant(services, "bench", "Benchmark", key, policy="default")
    return create_app(services)


if __name__ == "__main__":
    kind, url, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = bare_app(url) if kind == "bare" else dunwell_app(url, key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
