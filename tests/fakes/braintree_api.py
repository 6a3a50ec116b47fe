"""A loopback stand-in for Braintree's XML gateway API, enough for the official SDK.

Wire format as documented and as the SDK speaks it: XML bodies with dasherized tags and
`type="integer|boolean|array|datetime|collection"` / `nil="true"` attributes, HTTP Basic auth
with PUBLIC_KEY:PRIVATE_KEY, paths under /merchants/{merchant_id}/. Served:

* POST .../transactions: a sale -> 201 `<transaction>` (success), or 422 `<api-error-response>`
  with the `<transaction>` inside (processor_declined, gateway_rejected, failed) or with
  validation errors only.
* POST .../transactions/advanced_search_ids -> `<search-results>` with the matching ids.
* POST .../transactions/advanced_search -> `<credit-card-transactions type="collection">`.
  Criteria understood: order_id `is`, and ids. A search without criteria the fake
  understands fails the test rather than matching everything.

The vaulted token decides the outcome (see OUTCOMES); anything else settles. `fail_next`
injects a fault into the next sale: "unavailable" (503, nothing done) or "lost_response" (the
sale is made, the caller gets a 502).
"""

from __future__ import annotations

import base64
import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response

from fakes.server import LoopbackServer

# token -> the transaction's outcome fields
OUTCOMES: dict[str, dict[str, Any]] = {
    "bt_insufficient_funds": {
        "status": "processor_declined",
        "processor_response_code": "2001",
        "processor_response_text": "Insufficient Funds",
        "processor_response_type": "soft_declined",
        "network_response_code": "51",
    },
    "bt_expired_card": {
        "status": "processor_declined",
        "processor_response_code": "2004",
        "processor_response_text": "Expired Card",
        "processor_response_type": "hard_declined",
        "network_response_code": "54",
    },
    "bt_do_not_honor_mac03": {
        "status": "processor_declined",
        "processor_response_code": "2000",
        "processor_response_text": "Do Not Honor",
        "processor_response_type": "soft_declined",
        "network_response_code": "05",
        "merchant_advice_code": "03",
    },
    "bt_gateway_cvv": {"status": "gateway_rejected", "gateway_rejection_reason": "cvv"},
    "bt_network_unavailable": {
        "status": "failed",
        "processor_response_code": "3000",
        "processor_response_text": "Processor Network Unavailable - Try Again",
        "processor_response_type": "soft_declined",
    },
}
_FIELDS = (
    "processor_response_code",
    "processor_response_text",
    "processor_response_type",
    "network_response_code",
    "merchant_advice_code",
    "gateway_rejection_reason",
    "additional_processor_response",
)


class FakeBraintree:
    def __init__(
        self,
        merchant_id: str = "acme_merchant",
        public_key: str = "pub_fake",
        private_key: str = "priv_fake",
    ) -> None:
        self.merchant_id, self.public_key, self.private_key = merchant_id, public_key, private_key
        self.transactions: dict[str, dict[str, Any]] = {}
        self.sales: list[dict[str, Any]] = []  # every sale request as sent
        self.settled: list[str] = []  # ids of transactions that moved money
        self.fail_next: list[str] = []
        self._ids = itertools.count(1)
        self.server = LoopbackServer(self._build())
        self.url = self.server.url

    def __enter__(self) -> FakeBraintree:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def _build(self) -> FastAPI:
        app = FastAPI()
        base = "/merchants/{merchant_id}/transactions"

        @app.post(base)
        async def sale(merchant_id: str, request: Request) -> Response:
            if (denied := self._deny(merchant_id, request)) is not None:
                return denied
            root = ET.fromstring(await request.body())
            params = _plain(root)
            self.sales.append(params)
            fault = self.fail_next.pop(0) if self.fail_next else None
            if fault == "unavailable":
                return Response("", status_code=503)
            answer = self._sale(params)
            if fault == "lost_response":
                return Response("Bad Gateway", status_code=502)
            return answer

        @app.post(base + "/advanced_search_ids")
        async def search_ids(merchant_id: str, request: Request) -> Response:
            if (denied := self._deny(merchant_id, request)) is not None:
                return denied
            ids = [t["id"] for t in self._matching(ET.fromstring(await request.body()))]
            items = "".join(f"<item>{i}</item>" for i in ids)
            return _xml(
                '<search-results><page-size type="integer">50</page-size>'
                f'<ids type="array">{items}</ids></search-results>'
            )

        @app.post(base + "/advanced_search")
        async def search(merchant_id: str, request: Request) -> Response:
            if (denied := self._deny(merchant_id, request)) is not None:
                return denied
            criteria = ET.fromstring(await request.body())
            wanted = {item.text for item in criteria.findall("./ids/item")}
            found = [t for t in self._matching(criteria) if t["id"] in wanted]
            return _xml(
                '<credit-card-transactions type="collection">'
                '<current-page-number type="integer">1</current-page-number>'
                '<page-size type="integer">50</page-size>'
                f'<total-items type="integer">{len(found)}</total-items>'
                + "".join(_transaction_xml(t) for t in found)
                + "</credit-card-transactions>"
            )

        return app

    def _deny(self, merchant_id: str, request: Request) -> Response | None:
        expected = base64.b64encode(f"{self.public_key}:{self.private_key}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Response("", status_code=401)
        if merchant_id != self.merchant_id:
            return Response("", status_code=404)
        return None

    def _matching(self, criteria: ET.Element) -> list[dict[str, Any]]:
        assert {c.tag for c in criteria} <= {"order_id", "order-id", "ids"}, criteria
        # The SDK writes search criteria with underscores (<order_id>), bodies with dashes.
        order_id = criteria.findtext("./order_id/is") or criteria.findtext("./order-id/is")
        return [
            t
            for t in self.transactions.values()
            if order_id is None or t.get("order_id") == order_id
        ]

    def _sale(self, params: dict[str, Any]) -> Response:
        token = params.get("payment_method_token")
        if not token or token == "bt_deleted":
            return _xml(_validation_error("91518", "Payment method token is invalid."), 422)
        txn = {
            "id": f"bt{next(self._ids):06d}",
            "type": "sale",
            "amount": params["amount"],
            "currency_iso_code": "EUR",
            "order_id": params.get("order_id"),
            "transaction_source": params.get("transaction_source"),
            "token": token,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": "submitted_for_settlement",
            "processor_response_code": "1000",
            "processor_response_text": "Approved",
            "processor_response_type": "approved",
        }
        txn.update(OUTCOMES.get(token, {}))
        self.transactions[txn["id"]] = txn
        if txn["status"] == "submitted_for_settlement":
            self.settled.append(txn["id"])
            return _xml(_transaction_xml(txn), 201)
        message = txn.get("processor_response_text") or "Gateway Rejected"
        return _xml(
            '<api-error-response><errors><errors type="array"/></errors>'
            f"<message>{message}</message>{_transaction_xml(txn)}</api-error-response>",
            422,
        )


def _plain(node: ET.Element) -> dict[str, Any]:
    """The SDK's request XML as a dict with underscored keys (enough for a sale)."""
    out: dict[str, Any] = {}
    for child in node:
        key = child.tag.replace("-", "_")
        out[key] = _plain(child) if len(child) else child.text
    return out


def _transaction_xml(txn: dict[str, Any]) -> str:
    fields = "".join(
        f"<{name.replace('_', '-')}>{txn[name]}</{name.replace('_', '-')}>"
        if txn.get(name) is not None
        else f'<{name.replace("_", "-")} nil="true"/>'
        for name in ("id", "status", "type", "amount", "currency_iso_code", "order_id", *_FIELDS)
    )
    return (
        f"<transaction>{fields}"
        f'<created-at type="datetime">{txn["created_at"]}</created-at>'
        f"<credit-card><token>{txn['token']}</token><card-type>Visa</card-type></credit-card>"
        '<status-history type="array"/><add-ons type="array"/><discounts type="array"/>'
        "</transaction>"
    )


def _validation_error(code: str, message: str) -> str:
    return (
        '<api-error-response><errors><errors type="array"/><transaction>'
        f'<errors type="array"><error><code>{code}</code>'
        f"<attribute>payment_method_token</attribute><message>{message}</message></error>"
        "</errors></transaction></errors>"
        f"<message>{message}</message></api-error-response>"
    )


def _xml(body: str, status: int = 200) -> Response:
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    return Response(text, status, media_type="application/xml")
