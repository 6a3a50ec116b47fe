"""A loopback stand-in for Adyen's Checkout API /payments, enough for the official SDK.

Wire format as documented: JSON POST /checkout/v{N}/payments authenticated by `x-api-key`,
JSON answers with `resultCode`, `pspReference`, `refusalReason`, `refusalReasonCode` and
`additionalData` (`refusalReasonRaw`, `merchantAdviceCode`); errors as
`{status, errorCode, message, errorType}`. Idempotency as documented: a re-send under a key
already processed gets the first response (the key is echoed in an `Idempotency-Key` header)
and nothing is processed again.

The stored payment method id decides the outcome (see OUTCOMES); anything else is Authorised.
`fail_next` injects a fault into the next POST: "unavailable" (a 500, nothing processed) or
"lost_response" (processed and stored, but the caller gets a proxy 502).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from fastapi import FastAPI, Request, Response

from fakes.server import LoopbackServer

# storedPaymentMethodId -> the answer's outcome fields
OUTCOMES: dict[str, dict[str, Any]] = {
    "stored_not_enough_balance": {
        "resultCode": "Refused",
        "refusalReason": "Not enough balance",
        "refusalReasonCode": "12",
        "additionalData": {"refusalReasonRaw": "51 : Insufficient funds"},
    },
    "stored_do_not_honor_mac03": {
        "resultCode": "Refused",
        "refusalReason": "Refused",
        "refusalReasonCode": "2",
        "additionalData": {
            "refusalReasonRaw": "05 : Do not honor",
            "merchantAdviceCode": "03 : Do not try again",
        },
    },
    "stored_expired": {
        "resultCode": "Refused",
        "refusalReason": "Expired Card",
        "refusalReasonCode": "6",
        "additionalData": {"refusalReasonRaw": "54 : Expired card"},
    },
    "stored_auth_required": {
        "resultCode": "Refused",
        "refusalReason": "Authentication required",
        "refusalReasonCode": "38",
        "additionalData": {"refusalReasonRaw": "1A : Additional customer authentication required"},
    },
    "stored_challenge": {
        "resultCode": "ChallengeShopper",
        "action": {"type": "threeDS2", "paymentMethodType": "scheme", "token": "opaque"},
    },
}


class FakeAdyen:
    def __init__(self, api_key: str = "AQE_fake_key", merchant_account: str = "AcmeECOM") -> None:
        self.api_key, self.merchant_account = api_key, merchant_account
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.authorisations: list[str] = []  # pspReferences of payments that moved money
        self.stored: dict[str, dict[str, Any]] = {}
        self.fail_next: list[str] = []
        self._refs = itertools.count(8815000000000001)
        self.server = LoopbackServer(self._build())
        self.url = self.server.url

    def __enter__(self) -> FakeAdyen:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/checkout/{version}/payments")
        async def payments(version: str, request: Request) -> Response:
            if request.headers.get("x-api-key") != self.api_key:
                return _error(401, "000", "HTTP Status Response - Unauthorized", "security")
            body = json.loads(await request.body())
            key = request.headers.get("idempotency-key")
            self.paths.append(request.url.path)
            self.requests.append({"body": body, "idempotency_key": key})
            fault = self.fail_next.pop(0) if self.fail_next else None
            if fault == "unavailable":
                return _error(500, "905", "Payment details are not supported", "internal")
            if key and key in self.stored:
                return _json(200, self.stored[key], {"Idempotency-Key": key})
            if body.get("merchantAccount") != self.merchant_account:
                return _error(403, "901", "Invalid Merchant Account", "security")
            answer = self._process(body)
            if key:
                self.stored[key] = answer
            if fault == "lost_response":
                return Response("Bad Gateway", status_code=502)
            return _json(200, answer, {"Idempotency-Key": key} if key else None)

        return app

    def _process(self, body: dict[str, Any]) -> dict[str, Any]:
        reference = str(next(self._refs))
        token = body["paymentMethod"]["storedPaymentMethodId"]
        answer = {"pspReference": reference, "merchantReference": body["reference"]}
        if token in OUTCOMES:
            return {**answer, **OUTCOMES[token]}
        self.authorisations.append(reference)
        return {
            **answer,
            "resultCode": "Authorised",
            "amount": body["amount"],
            "additionalData": {"recurringProcessingModel": body["recurringProcessingModel"]},
        }


def _error(status: int, code: str, message: str, kind: str) -> Response:
    body = {"status": status, "errorCode": code, "message": message, "errorType": kind}
    return _json(status, body)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, media_type="application/json")
