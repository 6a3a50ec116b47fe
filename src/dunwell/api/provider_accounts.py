"""Routes: the tenant's provider accounts for outbound charges. Credentials go in, never out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dunwell.api.app import current_tenant
from dunwell.bootstrap import Services
from dunwell.providers import accounts

# app.py includes this router from inside create_app, so importing it here is no cycle.
Tenant = Annotated[str, Depends(current_tenant)]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str
    account: Annotated[str, Field(min_length=1, max_length=255)]
    credentials: dict[str, str]
    config: dict[str, Any] = Field(default_factory=dict)


def router() -> APIRouter:
    routes = APIRouter()

    @routes.post("/v1/provider-accounts", tags=["providers"], status_code=201)
    def create_account(spec: AccountIn, tenant: Tenant, request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        try:
            row = accounts.create(
                services.sessions,
                services.settings.secret_key,
                services.clock.now(),
                tenant_id=tenant,
                provider=spec.provider,
                account=spec.account,
                credentials=spec.credentials,
                config=spec.config,
            )
        except accounts.AccountError as exc:
            return JSONResponse({"error": "invalid_account", "message": str(exc)}, 422)
        return JSONResponse(accounts.view(row), status_code=201)

    @routes.get("/v1/provider-accounts", tags=["providers"])
    def list_accounts(tenant: Tenant, request: Request) -> dict[str, Any]:
        services: Services = request.app.state.services
        rows = accounts.list_for(services.sessions, tenant)
        return {"provider_accounts": [accounts.view(r) for r in rows]}

    return routes
