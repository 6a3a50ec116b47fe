"""The processor's HTTP API.

`POST /v1/charges` with an `Idempotency-Key` header and `{"amount", "currency",
"payment_method", "metadata"}`: 200 `{"id", "status": "succeeded"}`, or 402 `{"status":
"declined", "decline_code", "advice_code"}` (a token containing `decline_<code>` declines
with that Stripe code; `advice_<nn>` adds a Mastercard advice code). `GET
/v1/charges/by-key/{key}`: the stored answer for a key (how a client resolves an unknown
outcome without charging again). `GET /charges`: the ledger.

Error injection, per request, with probability `error_rate`: half the errors come before any
work (nothing happened), half after the capture committed (the client never hears it did):
the case a client must resolve by idempotency key, never by charging blindly again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from dunwell.sim.psp.ledger import Ledger

_DECLINE = re.compile(r"decline_([a-z_]+?)(?:_advice_(\d\d))?$")


def create_psp_app(
    ledger: Ledger, latency_ms: float = 0.0, error_rate: float = 0.0, seed: int | None = None
) -> FastAPI:
    app = FastAPI(title="dunwell sim psp")
    chance = random.Random(seed)

    async def pause() -> None:
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)

    @app.post("/v1/charges")
    async def charge(request: Request) -> JSONResponse:
        await pause()
        key = request.headers.get("idempotency-key")
        if not key:
            await run_in_threadpool(ledger.log_request, None, 400, "no_key")
            return JSONResponse({"error": "missing Idempotency-Key header"}, status_code=400)
        try:
            body: dict[str, Any] = json.loads(await request.body())
            amount, currency = int(body["amount"]), str(body["currency"])
            token = str(body["payment_method"])
        except (ValueError, KeyError, TypeError):
            await run_in_threadpool(ledger.log_request, key, 400, "bad_request")
            return JSONResponse({"error": "invalid request body"}, status_code=400)
        fingerprint = hashlib.sha256(f"{amount}|{currency}|{token}".encode()).hexdigest()
        stored = await run_in_threadpool(ledger.claim, key, fingerprint)
        if stored is not None:
            return await replay(key, fingerprint, stored)
        roll = chance.random()
        if roll < error_rate / 2:
            await run_in_threadpool(ledger.release, key)
            await run_in_threadpool(ledger.log_request, key, 503, "injected_error_before")
            return JSONResponse({"error": "injected failure before processing"}, status_code=503)
        status, answer, capture = decide_charge(key, amount, currency, token)
        await run_in_threadpool(ledger.finish, key, status, answer, capture)
        if roll < error_rate:
            await run_in_threadpool(ledger.log_request, key, 500, "injected_error_after")
            return JSONResponse({"error": "injected failure after processing"}, status_code=500)
        await run_in_threadpool(ledger.log_request, key, status, answer["status"])
        return JSONResponse(answer, status_code=status)

    async def replay(key: str, fingerprint: str, stored: Any) -> JSONResponse:
        if stored.fingerprint != fingerprint:
            await run_in_threadpool(ledger.log_request, key, 400, "idempotency_mismatch")
            return JSONResponse(
                {"error": "idempotency key reused with different parameters"}, status_code=400
            )
        if stored.state != "done":
            await run_in_threadpool(ledger.log_request, key, 409, "in_progress")
            return JSONResponse(
                {"error": "another request with this idempotency key is in progress"},
                status_code=409,
            )
        await run_in_threadpool(ledger.log_request, key, stored.status_code, "replayed")
        return JSONResponse(
            stored.body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
        )

    @app.get("/v1/charges/by-key/{key}")
    async def by_key(key: str) -> JSONResponse:
        stored = await run_in_threadpool(ledger.lookup, key)
        if stored is None or stored.state != "done":
            return JSONResponse({"error": "no finished request under this key"}, status_code=404)
        return JSONResponse(stored.body, status_code=stored.status_code)

    @app.get("/charges")
    async def charges() -> dict[str, Any]:
        return await run_in_threadpool(ledger.report)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def decide_charge(
    key: str, amount: int, currency: str, token: str
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    match = _DECLINE.search(token)
    if match is not None:
        code, advice = match.group(1), match.group(2)
        body = {
            "status": "declined",
            "decline_code": code,
            "advice_code": advice,
            "idempotency_key": key,
        }
        return 402, body, None
    charge_id = "ch_" + hashlib.sha256(key.encode()).hexdigest()[:24]
    body = {
        "id": charge_id,
        "status": "succeeded",
        "amount": amount,
        "currency": currency,
        "idempotency_key": key,
    }
    capture = {"id": charge_id, "amount": amount, "currency": currency, "token": token}
    return 200, body, capture
