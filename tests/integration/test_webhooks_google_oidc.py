"""Google Pub/Sub authenticated push: a Google-signed OIDC token, keys from a loopback JWKS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dunwell.webhooks import google as adapter
from dunwell.webhooks.base import Endpoint, WebhookRejected
from webhooks_support import FakeGoogleKeys
from webhooks_support import google_push as push

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PRICES = {"prices": {"pro.monthly": {"amount": 499, "currency": "EUR"}}}


def test_authenticated_push_with_a_google_signed_token():
    audience = "https://dunwell.example.com/webhooks/google/we_6"
    with FakeGoogleKeys() as google:
        config = {
            **PRICES,
            "auth": "oidc",
            "oidc_audience": audience,
            "oidc_jwks_url": google.url,
            "oidc_email": "pubsub@example.iam.gserviceaccount.com",
        }
        endpoint = Endpoint("we_6", "acme", "google", None, "unused", config)
        issued = int(NOW.timestamp()) - 60

        def check(token: str | None, now: datetime = NOW) -> str | None:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            try:
                adapter.verify(headers, push(6), endpoint, now)
            except WebhookRejected as exc:
                return exc.code
            return None

        assert check(google.token(audience, issued)) is None
        assert check(None) == "missing_signature"
        assert check(google.token("https://elsewhere", issued)) == "bad_signature"
        assert check(google.token(audience, issued, email="other@x.com")) == "bad_signature"
        assert check(google.token(audience, issued, iss="https://evil")) == "bad_signature"
        assert check(google.token(audience, issued - 7200)) == "stale_timestamp"
        token = google.token(audience, issued)
        assert check(token[:-6] + "AAAAAA") == "bad_signature"
        with FakeGoogleKeys() as stranger:  # same kid, another key: not Google's signature
            assert check(stranger.token(audience, issued)) == "bad_signature"
        # The URL token does not stand in for the push token in this mode.
        with pytest.raises(WebhookRejected):
            adapter.verify({"query:token": "unused"}, push(6), endpoint, NOW)
