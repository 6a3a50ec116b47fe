"""Provider accounts over HTTP and from the CLI: credentials go in, never come out, and are
encrypted at rest."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.e2e
DUNWELL = str(Path(sys.executable).with_name("dunwell"))
SECRET_KEY = "operator-secret-key-0123456789"
STRIPE_KEY = "sk_test_tenant_secret_4242"


def test_the_api_stores_an_account_encrypted_and_never_returns_its_credentials(services, client):
    services.settings.secret_key = SECRET_KEY  # what DUNWELL_SECRET_KEY sets at start
    spec = {"provider": "stripe", "account": "main", "credentials": {"api_key": STRIPE_KEY}}
    created = client.post("/v1/provider-accounts", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["provider"] == "stripe" and created.json()["account"] == "main"
    assert STRIPE_KEY not in created.text and "credentials" not in created.json()

    adyen = {
        "provider": "adyen",
        "account": "eu",
        "credentials": {"api_key": "AQE_adyen_secret"},
        "config": {"merchant_account": "AcmeECOM", "environment": "live",
                   "live_endpoint_prefix": "1797a841fbb37ca7-AcmeCom"},
    }  # fmt: skip
    assert client.post("/v1/provider-accounts", json=adyen).status_code == 201

    listed = client.get("/v1/provider-accounts")
    assert listed.status_code == 200
    views = listed.json()["provider_accounts"]
    by_provider = {v["provider"]: v for v in views}
    assert sorted(by_provider) == ["adyen", "stripe"] and by_provider["stripe"]["account"] == "main"
    assert by_provider["adyen"]["config"]["merchant_account"] == "AcmeECOM"
    assert STRIPE_KEY not in listed.text and "AQE_adyen_secret" not in listed.text

    with services.engine.connect() as connection:
        stored = [
            row[0] for row in connection.execute(text("SELECT credentials FROM provider_accounts"))
        ]
    assert all(s.startswith("fernet:") for s in stored)
    assert not any(STRIPE_KEY in s or "AQE_adyen_secret" in s for s in stored)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"provider": "paypal", "account": "a", "credentials": {"api_key": "x"}}, "unknown"),
        ({"provider": "stripe", "account": "a", "credentials": {}}, "needs api_key"),
        ({"provider": "adyen", "account": "a", "credentials": {"api_key": "x"}}, "merchant_acc"),
        (
            {"provider": "adyen", "account": "a", "credentials": {"api_key": "x"},
             "config": {"merchant_account": "M", "environment": "live"}},
            "live_endpoint_prefix",
        ),
        (
            {"provider": "braintree", "account": "a",
             "credentials": {"public_key": "p", "private_key": "k"},
             "config": {"merchant_id": "m", "environment": "prod"}},
            "environment",
        ),
        (
            {"provider": "stripe", "account": "a", "credentials": {"api_key": "x"},
             "config": {"api_base": "http://10.0.0.1"}},
            "operator",
        ),
        ({"provider": "stripe", "account": "a", "credentials": {"api_key": "x", "pw": "y"}}, "pw"),
    ],
)  # fmt: skip
def test_invalid_accounts_are_refused(services, client, spec, message):
    services.settings.secret_key = SECRET_KEY
    answer = client.post("/v1/provider-accounts", json=spec)
    assert answer.status_code == 422 and message in answer.json()["message"]


def test_without_a_secret_key_no_credentials_are_stored(client):
    spec = {"provider": "stripe", "account": "main", "credentials": {"api_key": STRIPE_KEY}}
    answer = client.post("/v1/provider-accounts", json=spec)
    assert answer.status_code == 422 and "DUNWELL_SECRET_KEY" in answer.json()["message"]
    assert client.get("/v1/provider-accounts").json() == {"provider_accounts": []}


def test_accounts_are_the_tenants_own(client, base_url):
    import httpx

    assert httpx.get(f"{base_url}/v1/provider-accounts").status_code == 401


def _cli(tmp_path: Path, *args: str, stdin: str | None = None, **extra: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env.update(DUNWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'dunwell.db'}", **extra)
    return subprocess.run(
        [DUNWELL, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        input=stdin,
    )  # fmt: skip


def test_the_cli_adds_rotates_and_lists_accounts(tmp_path):
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    assert _cli(tmp_path, "tenant", "create", "acme").returncode == 0
    creds = tmp_path / "stripe.json"
    creds.write_text(json.dumps({"api_key": STRIPE_KEY}))
    added = _cli(
        tmp_path, "providers", "add", "--tenant", "acme", "--provider", "stripe",
        "--account", "main", "--credentials-file", str(creds),
        "--config", json.dumps({"api_base": "http://127.0.0.1:9"}),
        DUNWELL_SECRET_KEY=SECRET_KEY,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    first = json.loads(added.stdout)
    assert first["config"] == {"api_base": "http://127.0.0.1:9"} and STRIPE_KEY not in added.stdout

    rotated = _cli(
        tmp_path, "providers", "add", "--tenant", "acme", "--provider", "stripe",
        "--account", "main", "--credentials-file", "-",
        stdin=json.dumps({"api_key": "sk_test_rotated"}), DUNWELL_SECRET_KEY=SECRET_KEY,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["id"] == first["id"]  # same account, new credentials

    listed = _cli(tmp_path, "providers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (view,) = json.loads(listed.stdout)["provider_accounts"]
    assert view["id"] == first["id"] and "sk_test" not in listed.stdout
    assert first["id"] in _cli(tmp_path, "providers", "list").stdout

    with sqlite3.connect(tmp_path / "dunwell.db") as db:
        (stored,) = db.execute("SELECT credentials FROM provider_accounts").fetchone()
    assert stored.startswith("fernet:") and "sk_test" not in stored

    refused = _cli(
        tmp_path, "providers", "add", "--tenant", "acme", "--provider", "stripe",
        "--account", "other", "--credentials-file", str(creds),
    )  # fmt: skip
    assert refused.returncode == 1 and "DUNWELL_SECRET_KEY" in refused.stderr
