"""`create_app(services)`: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from dunwell import __version__
from dunwell.api.views import case_view, dead_letter_view, timeline_view
from dunwell.bootstrap import Services, hash_api_key
from dunwell.engine import deadletters, durable
from dunwell.engine.event_schema import EVENT_TYPES, EventError, parse_event
from dunwell.store.unit_of_work import UnitOfWork

_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "type", "occurred_at"],
                    "properties": {
                        "id": {"type": "string", "description": "your unique event id (dedup key)"},
                        "type": {"type": "string", "enum": list(EVENT_TYPES)},
                        "occurred_at": {"type": "string", "format": "date-time"},
                    },
                    "additionalProperties": True,
                    "description": "A canonical event; see docs/events.md for every type.",
                }
            }
        },
    }
}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


async def current_tenant(request: Request) -> str:
    """The tenant whose API key is in `Authorization: Bearer KEY`; 401 otherwise."""
    services: Services = request.app.state.services
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "missing API key: send Authorization: Bearer KEY")
    # Cached (a key rotated in another process stops working within the cache's TTL); a hit
    # answers on the event loop, a miss reads the database in the thread pool.
    key_hash = hash_api_key(key.strip())
    tenant_id = services.tenants.cached_tenant_for_key(key_hash)
    if tenant_id is None:
        tenant_id = await run_in_threadpool(services.tenants.tenant_for_key, key_hash)
    if tenant_id is None:
        raise HTTPException(401, "unknown API key")
    return tenant_id


Tenant = Annotated[str, Depends(current_tenant)]


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="dunwell",
        version=__version__,
        description="Turns failed subscription payments into recovered revenue.",
    )
    app.state.services = services

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found"}.get(exc.status_code, "error")
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        response = _error(exc.status_code, code, str(exc.detail))
        if headers:
            response.headers.update(headers)
        return response

    from dunwell.api.webhooks import router as webhook_routes  # imports current_tenant

    app.include_router(webhook_routes())
    from dunwell.api.provider_accounts import router as account_routes

    app.include_router(account_routes())

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means not ready
            return _error(503, "not_ready", f"database unreachable: {type(exc).__name__}")
        problem = durable.problem()
        if problem is not None:
            return _error(503, "not_ready", problem)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        return Response(services.ingest.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", tags=["events"], openapi_extra=_EVENT_BODY, status_code=201)
    async def post_event(request: Request, tenant: Tenant) -> JSONResponse:
        raw = (await request.body()).decode("utf-8", errors="replace")
        try:
            event, payload = parse_event(raw)
        except EventError as exc:
            error = {"error": exc.code, "problems": exc.problems}
            dead_letter_id = await run_in_threadpool(
                deadletters.record, services.ingest, tenant, "api", raw, error
            )
            status = 400 if exc.code == "malformed_json" else 422
            return _error(
                status, exc.code, str(exc), problems=exc.problems, dead_letter_id=dead_letter_id
            )
        try:
            result = await run_in_threadpool(services.ingest, tenant, event, payload)
        except Exception as exc:  # nothing lost: keep the body for replay, then report
            error = {"error": "processing_failed", "message": f"{type(exc).__name__}: {exc}"}
            dead_letter_id = deadletters.record(services.ingest, tenant, "api", raw, error)
            return _error(
                500,
                "processing_failed",
                "the event could not be processed; it is kept in dead letters",
                dead_letter_id=dead_letter_id,
            )
        body = {
            "event_id": result.event_id,
            "duplicate": result.duplicate,
            "outcome": result.outcome,
            "case_id": result.case_ids[0] if result.case_ids else None,
            "case_ids": result.case_ids,
        }
        return JSONResponse(body, status_code=200 if result.duplicate else 201)

    @app.get("/v1/cases", tags=["cases"])
    def list_cases(
        tenant: Tenant,
        status: str | None = None,
        stage: str | None = None,
        lane: str | None = None,
        customer: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        with UnitOfWork(services.sessions) as uow:
            cases = uow.cases.list(
                tenant,
                status=status,
                stage=stage,
                lane=lane,
                customer_id=customer,
                limit=limit,
                offset=offset,
            )
        return {"cases": [case_view(c) for c in cases], "limit": limit, "offset": offset}

    @app.get("/v1/cases/{case_id}", tags=["cases"])
    def get_case(case_id: str, tenant: Tenant) -> dict[str, Any]:
        with UnitOfWork(services.sessions) as uow:
            case = uow.cases.get(tenant, case_id)
        if case is None:
            raise HTTPException(404, f"no case {case_id}")
        return case_view(case)

    @app.get("/v1/cases/{case_id}/timeline", tags=["cases"])
    def get_timeline(case_id: str, tenant: Tenant) -> dict[str, Any]:
        with UnitOfWork(services.sessions) as uow:
            if uow.cases.get(tenant, case_id) is None:
                raise HTTPException(404, f"no case {case_id}")
            view = timeline_view(uow.audit.for_case(case_id), uow.actions.for_case(case_id))
        return {"case_id": case_id, **view}

    @app.get("/v1/deadletters", tags=["dead letters"])
    def list_dead_letters(tenant: Tenant, status: str | None = None) -> dict[str, Any]:
        with UnitOfWork(services.sessions) as uow:
            rows = uow.deadletters.list(tenant, status)
            return {"dead_letters": [dead_letter_view(r) for r in rows]}

    @app.get("/v1/deadletters/{dead_letter_id}", tags=["dead letters"])
    def get_dead_letter(dead_letter_id: str, tenant: Tenant) -> dict[str, Any]:
        with UnitOfWork(services.sessions) as uow:
            row = uow.deadletters.get(dead_letter_id)
            if row is None or row.tenant_id != tenant:
                raise HTTPException(404, f"no dead letter {dead_letter_id}")
            return dead_letter_view(row, with_body=True)

    @app.post("/v1/deadletters/{dead_letter_id}/replay", tags=["dead letters"])
    def replay_dead_letter(dead_letter_id: str, tenant: Tenant) -> JSONResponse:
        try:
            outcome = deadletters.replay(services.ingest, dead_letter_id, tenant)
        except deadletters.DeadLetterNotFound:
            raise HTTPException(404, f"no dead letter {dead_letter_id}") from None
        if not outcome.ok or outcome.result is None:
            return _error(422, "replay_failed", json.dumps(outcome.error), detail=outcome.error)
        r = outcome.result
        return JSONResponse(
            {
                "replayed": True,
                "event_id": r.event_id,
                "duplicate": r.duplicate,
                "case_ids": r.case_ids,
                "outcome": r.outcome,
            }
        )

    return app
