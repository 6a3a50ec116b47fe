"""`dunwell webhooks add|list` as an operator runs them; secrets sealed at rest."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DUNWELL = str(Path(sys.executable).with_name("dunwell"))
SECRET_KEY = "operator-secret-key-0123456789"


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env.update(DUNWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'dunwell.db'}", **extra)
    return subprocess.run(
        [DUNWELL, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_add_and_list_endpoints_with_the_secret_encrypted(tmp_path):
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    assert _cli(tmp_path, "tenant", "create", "acme").returncode == 0
    added = _cli(
        tmp_path,
        "webhooks", "add", "--tenant", "acme", "--provider", "stripe",
        "--secret", "whsec_cli_secret", "--account", "acct_1", "--provider-retries",
        DUNWELL_SECRET_KEY=SECRET_KEY,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    endpoint = json.loads(added.stdout)
    assert endpoint["url_path"] == f"/webhooks/stripe/{endpoint['id']}"
    assert endpoint["provider_retries_enabled"] is True and "secret" not in endpoint

    google = json.loads(
        _cli(tmp_path, "webhooks", "add", "--tenant", "acme", "--provider", "google").stdout
    )
    assert len(google["secret"]) > 20  # generated: shown this once

    listed = _cli(tmp_path, "webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    views = json.loads(listed.stdout)["webhook_endpoints"]
    assert [v["provider"] for v in views] == ["stripe", "google"]
    assert "whsec_cli_secret" not in listed.stdout and google["secret"] not in listed.stdout
    assert endpoint["id"] in _cli(tmp_path, "webhooks", "list").stdout

    with sqlite3.connect(tmp_path / "dunwell.db") as db:
        stored = dict(db.execute("SELECT provider, secret FROM webhook_endpoints").fetchall())
    assert stored["stripe"].startswith("fernet:") and "whsec_cli_secret" not in stored["stripe"]
    assert stored["google"].startswith("plain:")  # no key was set for that one

    refused = _cli(tmp_path, "webhooks", "add", "--tenant", "acme", "--provider", "adyen",
                   "--secret", "not-hex")  # fmt: skip
    assert refused.returncode == 1 and "hexadecimal" in refused.stderr
    unknown = _cli(tmp_path, "webhooks", "add", "--tenant", "nobody", "--provider", "google")
    assert unknown.returncode == 1 and "no tenant" in unknown.stderr
