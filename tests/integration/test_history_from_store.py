"""Training on a deployment's own attempts: what the engine stored becomes history rows,
and `dunwell scoring train --tenant` trains a model version on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from dunwell.scoring.from_store import history_from_store
from factories import card_updated_body, failed_body, post, skip_until

pytestmark = pytest.mark.integration

DUNWELL = str(Path(sys.executable).with_name("dunwell"))


def _open(services, clock, n: int, token: str, code: str, customer: str) -> list[str]:
    ids = []
    for i in range(n):
        body = failed_body(
            f"evt_{customer}_{i}",
            clock.now(),
            invoice=f"in_{customer}_{i}",
            customer=f"{customer}_{i}",
            token=token,
            fingerprint=f"fp_{customer}_{i}",
            code=code,
        )
        ids.extend(post(services, body).case_ids)
    return ids


def test_the_engines_own_attempts_become_history_rows(services, clock) -> None:
    start = clock.now()
    failing = _open(services, clock, 1, "pm_decline_insufficient_funds", "insufficient_funds", "f")
    paying = _open(services, clock, 1, "pm_ok_1", "insufficient_funds", "p")
    expired = _open(services, clock, 1, "pm_old", "expired_card", "e")
    post(
        services,
        card_updated_body("evt_new_card", clock.now() + timedelta(hours=2), customer="e_0"),
    )
    skip_until(services, clock, clock.now() + timedelta(days=40))

    rows = history_from_store(services.sessions, "acme", start, clock.now())
    by_case: dict[str, list] = {}
    for row in rows:
        by_case.setdefault(row.case_id, []).append(row)

    declined = by_case[failing[0]]
    assert [r.attempt_number for r in declined] == [1, 2, 3, 4]  # default: four funds retries
    assert {r.outcome for r in declined} == {"declined"}
    assert {(r.decline_code, r.lane) for r in declined} == {
        ("insufficient_funds", "retry_after_funds")
    }
    assert all(r.first_failed_at == start for r in declined)
    assert [r.attempted_at for r in declined] == sorted(r.attempted_at for r in declined)
    assert (declined[0].amount_minor, declined[0].currency) == (1999, "EUR")
    assert (declined[0].card_brand, declined[0].country, declined[0].timezone) == (
        "visa",
        "DE",
        "Europe/Berlin",
    )
    assert [r.outcome for r in by_case[paying[0]]] == ["approved"]
    # The expired card was never charged; the new card's charge is not a row (the rules retry
    # a new card at once, whatever a model would say).
    assert expired[0] not in by_case
    # Cases opened before the window are left out.
    assert history_from_store(services.sessions, "acme", clock.now(), clock.now()) == []


def test_scoring_train_from_a_tenants_own_attempts(services, clock, database_url, tmp_path: Path):
    start = clock.now()
    _open(services, clock, 30, "pm_decline_do_not_honor", "do_not_honor", "d")
    _open(services, clock, 30, "pm_ok_1", "insufficient_funds", "o")
    skip_until(services, clock, clock.now() + timedelta(days=40))

    def train(*extra: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
        env["DUNWELL_DATABASE_URL"] = database_url
        return subprocess.run(
            [DUNWELL, "scoring", "train", "--model-dir", str(tmp_path), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    # The virtual clock ran ahead of the wall clock the CLI reads: look back far enough.
    done = train("--tenant", "acme", "--days", "3650", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    rows = history_from_store(services.sessions, "acme", start, clock.now())
    assert len(rows) == 30 * 5 + 30  # the default's five retries of do_not_honor; one each
    assert manifest["history_tenant"] == {"tenant": "acme", "days": 3650, "attempts": len(rows)}
    assert manifest["rows"] == len(rows) and manifest["approved"] == 30
    assert (tmp_path / manifest["version"] / "model.pkl").is_file()

    unknown = train("--tenant", "nobody")
    assert unknown.returncode == 2 and "no tenant 'nobody'" in unknown.stderr
