"""API keys are cached by the server; rotating one through this process takes effect at once."""

from __future__ import annotations

import httpx
import pytest

from dunwell.bootstrap import ensure_tenant
from factories import API_KEY

pytestmark = pytest.mark.e2e


def _status(base_url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{base_url}/v1/cases", headers=headers).status_code


def test_a_rotated_key_stops_working_and_the_new_one_works_at_once(base_url, services):
    assert _status(base_url, API_KEY) == 200  # cached from here on
    new_key = "rotated-key-0123456789"
    ensure_tenant(services, "acme", "Acme", new_key)
    assert _status(base_url, API_KEY) == 401
    assert _status(base_url, new_key) == 200


def test_a_new_tenant_key_works_at_once(base_url, services):
    assert _status(base_url, "other-key-0123456789") == 401  # an unknown key is not cached
    ensure_tenant(services, "other", "Other", "other-key-0123456789")
    assert _status(base_url, "other-key-0123456789") == 200
