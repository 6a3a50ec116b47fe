"""A loopback stand-in for api.stripe.com's PaymentIntents, enough for the official SDK.

Wire format as documented: form-encoded POST /v1/payment_intents (bracketed keys for nested
params), `Authorization: Bearer sk_...`, JSON answers, error objects under `error` with HTTP
402 for card errors. Idempotency as documented for API v1: the status and body of the first
request under a key are stored once execution begins and replayed to every re-send with the
same parameters (500s included), with `Idempotent-Replayed: true`; other parameters under the
same key are a 400 `idempotency_error`. GET /v1/payment_intents/search understands
`metadata['KEY']:'VALUE'`.

The payment method token decides the outcome: `pm_decline_<decline_code>` (see DECLINES),
`pm_requires_action` (a 200 with status requires_action), `pm_authentication_required` (the
off-session 402 Stripe gives when the issuer wants 3DS); anything else succeeds. `fail_next`
injects a fault into the next POST: "unavailable" (503, nothing done), "lost_response" (the
charge is made and stored, but the caller gets a proxy 502: the answer was lost in transit),
"stored_500" (the charge is made, Stripe errors afterwards and stores that 500 for the key).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response

from fakes.server import LoopbackServer

# decline_code -> (network_decline_code, advice_code, network_advice_code, message)
DECLINES: dict[str, tuple[str | None, str | None, str | None, str]] = {
    "insufficient_funds": ("51", "try_again_later", None, "Your card has insufficient funds."),
    "do_not_honor": ("05", None, "03", "Your card was declined."),
    "stolen_card": ("43", "do_not_try_again", None, "Your card was declined."),
    "expired_card": ("54", "confirm_card_data", None, "Your card has expired."),
    "generic_decline": ("05", None, None, "Your card was declined."),
}


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding: metadata[case_id]=x -> {"metadata": {"case_id": "x"}}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class FakeStripe:
    def __init__(self, api_key: str = "sk_test_fake") -> None:
        self.api_key = api_key
        self.intents: dict[str, dict[str, Any]] = {}
        self.captures: list[str] = []  # ids of PaymentIntents that moved money
        self.requests: list[dict[str, Any]] = []  # every POST: params, key, headers
        self.stored: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self.fail_next: list[str] = []
        self._ids = itertools.count(1)
        self.app = self._build()
        self.server = LoopbackServer(self.app)
        self.url = self.server.url

    def __enter__(self) -> FakeStripe:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/payment_intents")
        async def create(request: Request) -> Response:
            if (denied := self._auth(request)) is not None:
                return denied
            params = _nested(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            key = request.headers.get("idempotency-key")
            self.requests.append({"params": params, "idempotency_key": key})
            fault = self.fail_next.pop(0) if self.fail_next else None
            if fault == "unavailable":
                return _json(503, _error("api_error", "Service unavailable"))
            if key and key in self.stored:
                first, status, body = self.stored[key]
                if first != params:
                    message = "Keys for idempotent requests can only be used with the same "
                    return _json(400, _error("idempotency_error", message + "parameters"))
                return _json(status, body, {"Idempotent-Replayed": "true"})
            status, body = self._execute(params)
            if fault == "stored_500":
                status, body = 500, _error("api_error", "An unknown error occurred")
            if key:
                self.stored[key] = (params, status, body)
            if fault == "lost_response":
                return Response("Bad Gateway", status_code=502)
            return _json(status, body)

        @app.get("/v1/payment_intents/search")
        async def search(request: Request) -> Response:
            if (denied := self._auth(request)) is not None:
                return denied
            match = re.fullmatch(r"metadata\['(\w+)'\]:'(.*)'", request.query_params["query"])
            assert match, "the fake understands metadata['KEY']:'VALUE' only"
            name, value = match.groups()
            data = [i for i in self.intents.values() if i["metadata"].get(name) == value]
            body = {
                "object": "search_result",
                "url": "/v1/payment_intents/search",
                "has_more": False,
                "next_page": None,
                "data": data,
            }
            return _json(200, body)

        @app.get("/v1/payment_intents/{intent_id}")
        async def retrieve(intent_id: str, request: Request) -> Response:
            if (denied := self._auth(request)) is not None:
                return denied
            if intent_id not in self.intents:
                return _json(404, _error("invalid_request_error", "No such payment_intent"))
            return _json(200, self.intents[intent_id])

        return app

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _json(401, _error("invalid_request_error", "Invalid API Key provided"))
        return None

    def _execute(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for name in ("amount", "currency", "customer", "payment_method"):
            if not params.get(name):
                return 400, _error("invalid_request_error", f"Missing required param: {name}.")
        token = params["payment_method"]
        intent = {
            "id": f"pi_fake{next(self._ids)}",
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params["customer"],
            "payment_method": token,
            "confirmation_method": "automatic",
            "metadata": params.get("metadata", {}),
            "last_payment_error": None,
            "status": "succeeded",
        }
        self.intents[intent["id"]] = intent
        if token == "pm_requires_action":
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            return 200, intent
        if token == "pm_authentication_required":
            error = {
                "type": "card_error",
                "code": "authentication_required",
                "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
            }
            return self._declined(intent, error)
        if token.startswith("pm_decline_"):
            decline_code = token.removeprefix("pm_decline_")
            network, advice, network_advice, message = DECLINES[decline_code]
            error = {
                "type": "card_error",
                "code": "expired_card" if decline_code == "expired_card" else "card_declined",
                "decline_code": decline_code,
                "network_decline_code": network,
                "advice_code": advice,
                "network_advice_code": network_advice,
                "message": message,
            }
            return self._declined(intent, error)
        if params.get("confirm") == "true":
            self.captures.append(intent["id"])
        return 200, intent

    @staticmethod
    def _declined(intent: dict[str, Any], error: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = dict(error)
        body = {"error": {**error, "payment_intent": dict(intent)}}
        return 402, body


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, media_type="application/json")
