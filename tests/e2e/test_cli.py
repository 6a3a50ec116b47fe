"""The `dunwell` command as a user runs it: `run` (what `make run` starts), policy, dead letters."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from e2e_support import free_port
from factories import failed_body

pytestmark = pytest.mark.e2e

DUNWELL = str(Path(sys.executable).with_name("dunwell"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env.update(DUNWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'dunwell.db'}", **extra)
    return env


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DUNWELL, *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_run_serves_the_api_with_a_demo_tenant_and_stops_cleanly(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [DUNWELL, "run"],
            env=_env(tmp_path, DUNWELL_PORT=str(port)),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        key = None
        deadline = time.monotonic() + 60
        while key is None:
            assert process.poll() is None, f"dunwell run exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no generated API key printed:\n{log.read_text()}"
            if match := re.search(r"API key \(generated.*\): (\S+)", log.read_text()):
                key = match.group(1)
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {key}"}
        body = failed_body("evt_1", datetime.now(UTC))
        posted = httpx.post(f"{url}/v1/events", json=body, headers=auth)
        assert posted.status_code == 201, posted.text
        case = httpx.get(f"{url}/v1/cases/{posted.json()['case_id']}", headers=auth).json()
        assert case["decline"]["lane"] == "retry_after_funds"
        retry = next(a for a in case["plan"] if a["type"] == "retry")
        assert datetime.fromisoformat(retry["due_at"]) > datetime.now(UTC)
        # The embedded worker runs what is due now: the grace period starts within seconds.
        while httpx.get(f"{url}/v1/cases/{case['id']}", headers=auth).json()["access"] != "grace":
            assert time.monotonic() < deadline, "the worker never ran the due access step"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_policy_validate_accepts_the_shipped_policies_and_names_each_problem(tmp_path):
    shipped = Path(__file__).parents[2] / "src" / "dunwell" / "policies"
    for name in ("default.yaml", "baseline-fixed.yaml"):
        ok = _cli(tmp_path, "policy", "validate", str(shipped / name))
        assert ok.returncode == 0 and "is valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    text = (
        (shipped / "default.yaml")
        .read_text()
        .replace("retries: [6h, 1d, 3d, 6d, 10d]", "retries: [6h, 1x]")
    )
    bad.write_text(text.replace("level: limited}", "level: gone}", 1))
    result = _cli(tmp_path, "policy", "validate", str(bad))
    assert result.returncode == 1
    assert "lanes.retry_soon.retries[1]" in result.stderr
    assert "lanes.retry_soon.access[1].level" in result.stderr


def test_a_dead_letter_can_be_replayed_with_a_corrected_body(tmp_path):
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    sys_path = os.pathsep.join(sys.path)
    script = (
        "from dunwell.bootstrap import build, ensure_tenant\n"
        "from dunwell.engine import deadletters\n"
        "from dunwell.settings import Settings\n"
        "s = build(Settings())\n"
        "ensure_tenant(s, 'demo', 'Demo', 'demo-key-0123456789', policy='default')\n"
        "print(deadletters.record(s.ingest, 'demo', 'api', '{\"id\": 1}', {'error': 'x'}))\n"
    )
    recorded = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(tmp_path, PYTHONPATH=sys_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    dead_letter_id = recorded.stdout.strip()
    assert dead_letter_id.startswith("dl_"), recorded.stderr

    listed = json.loads(_cli(tmp_path, "deadletters", "list", "--json").stdout)
    assert [d["id"] for d in listed["dead_letters"]] == [dead_letter_id]
    assert "pending" in _cli(tmp_path, "deadletters", "list").stdout
    failed = _cli(tmp_path, "deadletters", "replay", dead_letter_id)
    assert failed.returncode == 1 and "replay failed" in failed.stderr

    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(failed_body("evt_fixed", datetime.now(UTC))))
    replayed = _cli(tmp_path, "deadletters", "replay", dead_letter_id, "--body-file", str(fixed))
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["outcome"] == "opened"
    again = _cli(tmp_path, "deadletters", "replay", dead_letter_id, "--body-file", str(fixed))
    assert json.loads(again.stdout)["duplicate"] is True
