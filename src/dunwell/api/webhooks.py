"""Routes: inbound provider webhooks, and the tenant API that configures their endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dunwell.api.app import current_tenant
from dunwell.bootstrap import Services
from dunwell.webhooks import endpoints
from dunwell.webhooks.receive import receive

# app.py includes this router from inside create_app, so importing it here is no cycle.
Tenant = Annotated[str, Depends(current_tenant)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str
    secret: Annotated[str, Field(min_length=1)] | None = None
    account: str | None = None
    provider_retries_enabled: bool = False
    config: dict[str, Any] = Field(default_factory=dict)


def router() -> APIRouter:
    routes = APIRouter()

    @routes.post("/webhooks/{provider}/{endpoint_id}", tags=["webhooks"])
    async def inbound(provider: str, endpoint_id: str, request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = await run_in_threadpool(
            receive, services, provider, endpoint_id, headers, body, dict(request.query_params)
        )
        return JSONResponse(answer.body, status_code=answer.status)

    @routes.post("/v1/webhook-endpoints", tags=["webhooks"], status_code=201)
    def create_endpoint(spec: EndpointIn, tenant: Tenant, request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        try:
            created = endpoints.create(
                services.sessions,
                services.settings.secret_key,
                services.clock.now(),
                tenant_id=tenant,
                provider=spec.provider,
                secret=spec.secret,
                account=spec.account,
                provider_retries_enabled=spec.provider_retries_enabled,
                config=spec.config,
            )
        except endpoints.EndpointError as exc:
            return JSONResponse({"error": "invalid_endpoint", "message": str(exc)}, 422)
        body = endpoints.view(created.endpoint)
        if created.secret_shown:
            body["secret"] = created.secret_shown  # shown this once, never again
        return JSONResponse(body, status_code=201)

    @routes.get("/v1/webhook-endpoints", tags=["webhooks"])
    def list_endpoints(tenant: Tenant, request: Request) -> dict[str, Any]:
        services: Services = request.app.state.services
        rows = endpoints.list_for(services.sessions, tenant)
        return {"webhook_endpoints": [endpoints.view(r) for r in rows]}

    @routes.get("/v1/webhook-endpoints/{endpoint_id}/deliveries", tags=["webhooks"])
    def list_deliveries(
        endpoint_id: str, tenant: Tenant, request: Request, limit: int = 100
    ) -> JSONResponse:
        services: Services = request.app.state.services
        rows = endpoints.deliveries(services.sessions, tenant, endpoint_id, min(limit, 1000))
        if rows is None:
            return JSONResponse({"error": "not_found", "message": f"no {endpoint_id}"}, 404)
        return JSONResponse({"deliveries": [endpoints.delivery_view(r) for r in rows]})

    return routes
