"""Training on a deployment's own attempts: what the engine stored becomes history rows,
`dunwell scoring train --tenant` trains a model version on them in the tenant's own folder,
and a running service times each tenant's retries with its own model (or, without one, with
the model trained on imported history, or the cold-start rules)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dunwell.bootstrap import build, ensure_tenant
from dunwell.providers.base import ProviderRegistry
from dunwell.scoring.from_store import history_from_store
from dunwell.scoring.history import COLUMNS, read_history
from dunwell.scoring.model import train
from dunwell.scoring.retrain import (
    Outcome,
    Retrainer,
    RoundInChild,
    learning_tenants,
    retrain_tenants,
)
from dunwell.scoring.store import ModelStore, tenant_model_dir
from dunwell.settings import Settings
from dunwell.store.tables import PolicyAssignment
from dunwell.store.unit_of_work import UnitOfWork
from e2e_support import free_port
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
    # How each case ended, for a backtest: the policy gave up on the first (its funds lane
    # ends three weeks after the failure), a retry recovered the second.
    assert {(r.case_outcome, r.case_closed_at) for r in declined} == {
        ("churned", start + timedelta(days=21))
    }
    paid = by_case[paying[0]][0]
    assert paid.case_outcome == "recovered_by_retry" and paid.case_closed_at is not None
    assert paid.case_closed_at >= paid.attempted_at
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
    # In the tenant's own folder: its attempts time its retries only, no other tenant's.
    assert (tmp_path / "tenants" / "acme" / manifest["version"] / "model.pkl").is_file()
    assert ModelStore(tmp_path).versions() == []
    show = subprocess.run(
        [DUNWELL, "scoring", "show", "--model-dir", str(tmp_path), "--tenant", "acme", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["history_tenant"]["tenant"] == "acme"

    unknown = train("--tenant", "nobody")
    assert unknown.returncode == 2 and "no tenant 'nobody'" in unknown.stderr

    # Every tenant whose policy learns, each on its own attempts (acme runs `default`: none).
    none = train("--all-tenants", "--days", "3650", "--json")
    assert none.returncode == 0, none.stderr
    assert json.loads(none.stdout) == {"round": 1, "tenants": {}}
    assert "no tenant's policy uses the model" in none.stderr
    _assign(services, "acme", "smart")
    again = train("--all-tenants", "--days", "3650", "--json")
    assert again.returncode == 0, again.stderr
    outcome = {"acme": "no attempt added since the newest model"}  # --tenant acme just did
    assert json.loads(again.stdout) == {"round": 1, "tenants": outcome}
    mixed = train("--all-tenants", "--tenant", "acme")
    assert mixed.returncode == 2 and "no --tenant or --history" in mixed.stderr


def _model(folder: Path, history: Path, seed: int) -> str:
    """A model version in `folder`, trained on 400 issuer declines retried up to 3 times."""
    rng = random.Random(seed)
    with history.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(400):
            failed = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(hours=5 * i)
            for n in range(1, 4):
                at = failed + timedelta(days=n, hours=rng.randrange(24))
                writer.writerow(
                    {
                        "case_id": f"h{seed}_{i}",
                        "first_failed_at": failed.isoformat(),
                        "attempted_at": at.isoformat(),
                        "attempt_number": n,
                        "outcome": "approved" if rng.random() < 0.35 else "declined",
                        "amount_minor": 1999,
                        "currency": "EUR",
                        "decline_code": "do_not_honor",
                        "card_brand": "visa",
                        "country": "DE",
                        "timezone": "Europe/Berlin",
                        "segment": "consumer",
                    }
                )
    rows, bad = read_history(history)
    assert not bad
    return ModelStore(folder).save(*train(rows))


def _models_in_use(exposition: str) -> dict[tuple[str, ...], float]:
    """The retry-model gauges of a `/metrics` body, by name, tenant, source and version."""
    return {
        (sample.name, sample.labels["tenant"], sample.labels["source"], sample.labels["version"]):
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name.startswith("dunwell_retry_model")
        for sample in family.samples
    }  # fmt: skip


def _first_retry_rule(
    database_url, clock, processor, root: Path, n: int, scraped: list[str] | None = None
) -> dict[str, str]:
    """A fresh service over `root`; one issuer decline each for acme and beta, both on
    `smart`: the rule that timed each one's first retry (and `/metrics` in `scraped`)."""
    services = build(
        Settings(database_url=database_url, model_dir=root),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
    )
    try:
        rules = {}
        for tenant in ("acme", "beta"):
            ensure_tenant(services, tenant, tenant.title(), None, policy="smart")
            body = failed_body(
                f"evt_{tenant}_{n}",
                clock.now(),
                invoice=f"in_{tenant}_{n}",
                customer=f"cus_{tenant}_{n}",
                token="pm_decline_do_not_honor",
                code="do_not_honor",
            )
            case_id = post(services, body, tenant=tenant).case_ids[0]
            with UnitOfWork(services.sessions) as uow:
                retry = next(a for a in uow.actions.for_case(case_id) if a.type == "retry")
            rules[tenant] = retry.rule
        if scraped is not None:
            scraped.append(services.ingest.metrics.render().decode())
        return rules
    finally:
        services.close()


def test_each_tenant_is_timed_by_the_model_trained_on_its_own_attempts(
    database_url, clock, processor, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    assert _model(tenant_model_dir(root, "acme"), tmp_path / "acme.csv", seed=1) == "0001"
    # Only acme has learned anything: beta's retry follows the cold-start rules.
    scraped: list[str] = []
    rules = _first_retry_rule(database_url, clock, processor, root, 1, scraped)
    assert rules["acme"].endswith("+ model 0001"), rules
    assert "model" not in rules["beta"], rules
    # /metrics says which model times whose retries, and how old what it learned is.
    manifest = ModelStore(tenant_model_dir(root, "acme")).manifest("0001")
    acme = ("acme", "own", "0001")
    age = (clock.now() - datetime.fromisoformat(manifest["history_to"])).total_seconds()
    assert _models_in_use(scraped[0]) == {
        ("dunwell_retry_model_rows", *acme): manifest["rows"],
        ("dunwell_retry_model_history_age_seconds", *acme): age,
        ("dunwell_retry_model_versions_held_back", *acme): 0,
    }  # beta has no model at all: the cold-start rules, no line
    # Models trained on imported history (the folder itself) time the tenants without their
    # own; acme keeps its own, though the shared one is newer.
    for seed in (2, 3):
        _model(root, tmp_path / f"imported{seed}.csv", seed)
    rules = _first_retry_rule(database_url, clock, processor, root, 2, scraped)
    assert rules["beta"].endswith("+ model 0002"), rules
    beta = ("dunwell_retry_model_rows", "beta", "imported", "0002")
    assert _models_in_use(scraped[1])[beta] == ModelStore(root).manifest("0002")["rows"]
    assert rules["acme"].endswith("+ model 0001"), rules
    # The two differ, so the rule's version is not a coincidence of numbering.
    own = ModelStore(tenant_model_dir(root, "acme")).manifest()
    shared = ModelStore(root).manifest()
    assert own["sha256"] != shared["sha256"]


def test_metrics_show_every_learning_tenant_s_model_before_its_first_retry(
    database_url, clock, processor, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    for tenant, seed in (("acme", 1), ("shop.example/eu", 2)):
        _model(tenant_model_dir(root, tenant), tmp_path / f"{seed}.csv", seed=seed)
    _model(root, tmp_path / "imported.csv", seed=3)  # what a listed stray folder would get
    (root / "tenants" / "copied.by.hand").mkdir()  # not a name tenant_model_dir makes
    services = build(
        Settings(database_url=database_url, model_dir=root),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
    )
    try:  # a service just (re)started: no decision yet
        # gamma times its retries with the model trained on imported history (no folder of
        # its own); delta's policy does not use a model at all.
        ensure_tenant(services, "gamma", "Gamma", None, policy="smart")
        ensure_tenant(services, "delta", "Delta", None, policy="default")
        scraped = _models_in_use(services.ingest.metrics.render().decode())
    finally:
        services.close()
    rows = {k[1:]: v for k, v in scraped.items() if k[0] == "dunwell_retry_model_rows"}
    assert rows == {
        ("acme", "own", "0001"): ModelStore(tenant_model_dir(root, "acme")).manifest()["rows"],
        ("shop.example/eu", "own", "0001"): ModelStore(
            tenant_model_dir(root, "shop.example/eu")
        ).manifest()["rows"],
        ("gamma", "imported", "0001"): ModelStore(root).manifest()["rows"],
    }


def test_a_tenant_id_is_one_folder_inside_the_model_folder(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for tenant in ("acme", "..", "../../etc", "a/b", "shop.example", "名前"):
        folder = tenant_model_dir(root, tenant)
        assert folder.parent == root / "tenants", tenant
        assert folder.name not in (".", "..") and "/" not in folder.name, tenant
    # Quoting is one-to-one: an id that looks like a quoted one gets its own folder.
    assert tenant_model_dir(root, "a.b") != tenant_model_dir(root, "a%2Eb")


def _assign(services, tenant: str, policy: str) -> None:
    with UnitOfWork(services.sessions) as uow:
        row = uow.session.scalars(
            select(PolicyAssignment).where(
                PolicyAssignment.tenant_id == tenant, PolicyAssignment.storefront == ""
            )
        ).one()
        row.policy_name = policy
        uow.commit()
    services.tenants.invalidate()


def test_a_round_retrains_each_tenant_whose_policy_learns_on_its_own_attempts(
    services, clock, tmp_path: Path
) -> None:
    _open(services, clock, 30, "pm_decline_do_not_honor", "do_not_honor", "d")
    _open(services, clock, 30, "pm_ok_1", "insufficient_funds", "o")
    skip_until(services, clock, clock.now() + timedelta(days=40))
    _assign(services, "acme", "smart")  # acme's history was made under default; it now learns
    ensure_tenant(services, "beta", "Beta", None, policy="default")  # never uses the model
    ensure_tenant(services, "gamma", "Gamma", None, policy="smart")  # no attempt yet
    book = services.policies
    assert learning_tenants(services.sessions, book.policies, book.default_name) == [
        "acme",
        "gamma",
    ]
    root = tmp_path / "models"

    def round_(days: int = 365) -> dict[str, str]:
        outcomes = retrain_tenants(
            root, services.sessions, book.policies, book.default_name, days, clock.now()
        )
        return {tenant: f"{o.status}: {o.text}" for tenant, o in outcomes.items()}

    first = round_()
    assert first["acme"] == f"trained: version 0001 ({30 * 5 + 30} attempts)", first
    assert first["gamma"].startswith("waiting: not yet: cannot train"), first
    assert "beta" not in first
    manifest = ModelStore(tenant_model_dir(root, "acme")).manifest()
    assert manifest["history_tenant"] == {"tenant": "acme", "days": 365, "attempts": 180}
    assert ModelStore(tenant_model_dir(root, "gamma")).versions() == []
    # Nothing new for acme: no second version. One more case and its attempts: a new one.
    assert round_()["acme"] == "unchanged: no attempt added since the newest model"
    _open(services, clock, 1, "pm_decline_do_not_honor", "do_not_honor", "late")
    skip_until(services, clock, clock.now() + timedelta(days=40))
    assert round_()["acme"].startswith("trained: version 0002")
    # A shorter window drops the first 60 cases: less history, nothing newer, no version
    # (else an idle tenant's sliding window would add one every round).
    assert round_(days=60)["acme"] == "unchanged: no attempt added since the newest model"
    assert ModelStore(tenant_model_dir(root, "acme")).versions() == ["0001", "0002"]


def test_the_schedule_survives_a_failing_round_and_stops_when_asked() -> None:
    calls: list[int] = []

    def round_() -> dict[str, str]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the model folder is not writable")
        return {}

    retrainer = Retrainer(timedelta(milliseconds=20), round_)
    retrainer.start()
    deadline = time.monotonic() + 30
    while retrainer.rounds < 3:
        assert time.monotonic() < deadline, "the schedule stopped after a failing round"
        time.sleep(0.01)
    retrainer.stop()
    stopped_at = len(calls)
    time.sleep(0.1)
    assert len(calls) == stopped_at  # no round after stop()


def test_stopping_the_schedule_ends_a_round_under_way_in_its_child(tmp_path: Path) -> None:
    round_ = RoundInChild(tmp_path / "models", 365)
    assert round_.command[2:6] == ["dunwell.cli", "scoring", "train", "--all-tenants"]
    # A round that would take a minute: stop() must not wait for it.
    started = tmp_path / "started"
    round_.command = [
        sys.executable,
        "-c",
        f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)",
    ]
    retrainer = Retrainer(timedelta(hours=1), round_)
    retrainer.start()
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline, "the round's child never started"
        time.sleep(0.01)
    begun = time.monotonic()
    retrainer.stop(timeout=20)
    assert time.monotonic() - begun < 10 and retrainer.rounds == 1  # the round has returned
    assert round_() == {}  # stopped: no new round starts


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dunwell_run_retrains_a_learning_tenant_by_itself(
    services, clock, database_url, tmp_path: Path
) -> None:
    _open(services, clock, 30, "pm_decline_do_not_honor", "do_not_honor", "d")
    _open(services, clock, 30, "pm_ok_1", "insufficient_funds", "o")
    skip_until(services, clock, clock.now() + timedelta(days=40))
    _assign(services, "acme", "smart")
    models = tmp_path / "models"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env.update(
        DUNWELL_DATABASE_URL=database_url,
        DUNWELL_MODEL_DIR=str(models),
        DUNWELL_PORT=str(free_port()),
        DUNWELL_RETRAIN_EVERY="1h",
    )
    bad = subprocess.run(
        [DUNWELL, "run"],
        env={**env, "DUNWELL_RETRAIN_EVERY": "daily"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "DUNWELL_RETRAIN_EVERY" in bad.stderr, bad.stderr
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [DUNWELL, "run"], env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        manifest = tenant_model_dir(models, "acme") / "0001" / "manifest.json"
        deadline = time.monotonic() + 120
        while not manifest.is_file():
            assert process.poll() is None, f"dunwell run exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no model trained:\n{log.read_text()}"
            time.sleep(0.2)
        assert json.loads(manifest.read_text())["history_tenant"]["tenant"] == "acme"
        # The round ran as a child (`dunwell scoring train --all-tenants`), which the service
        # waited for and whose outcome per tenant it logged.
        while "scoring.retrain_round" not in log.read_text():
            assert time.monotonic() < deadline, f"no round logged:\n{log.read_text()}"
            time.sleep(0.2)
        rounds = [
            json.loads(line)
            for line in log.read_text().splitlines()
            if line.startswith("{") and '"scoring.retrain_round"' in line
        ]
        assert rounds[0]["tenants"]["acme"].startswith("version 0001 ("), rounds
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    # The demo tenant runs `default`: nothing to learn, no folder.
    assert not tenant_model_dir(models, "demo").exists()


def _champion_history(path: Path, last: datetime) -> None:
    """400 past cases up to `last` in which money-short customers paid at the first retry
    and issuer declines never did."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(400):
            code = "insufficient_funds" if i % 2 else "do_not_honor"
            failed = last - timedelta(days=3, hours=400 - i)  # the last attempt just before
            for n in range(1, 2 if code == "insufficient_funds" else 4):
                writer.writerow(
                    {
                        "case_id": f"past_{i}",
                        "first_failed_at": failed.isoformat(),
                        "attempted_at": (failed + timedelta(days=n)).isoformat(),
                        "attempt_number": n,
                        "outcome": "approved" if code == "insufficient_funds" else "declined",
                        "amount_minor": 1999,
                        "currency": "USD",
                        "decline_code": code,
                        "card_brand": "visa",
                        "country": "US",
                        "timezone": "UTC",
                        "segment": "consumer",
                    }
                )


def test_a_tenants_round_keeps_its_model_when_the_new_training_predicts_worse(
    services, clock, database_url, tmp_path: Path
) -> None:
    # Before: the opposite of what the model in use learned (money-short customers never
    # paid, issuer declines passed at once).
    _open(services, clock, 30, "pm_decline_insufficient_funds", "insufficient_funds", "f")
    _open(services, clock, 30, "pm_ok_1", "do_not_honor", "i")
    # Every case ends within 21 days; the later ones open before the wall clock's today,
    # which the CLI reads (it takes cases by when they opened).
    skip_until(services, clock, clock.now() + timedelta(days=22))
    middle = clock.now()
    assert middle < datetime.now(UTC)
    root = tmp_path / "models"
    history = tmp_path / "past.csv"
    _champion_history(history, middle - timedelta(hours=1))
    rows, bad = read_history(history)
    assert not bad
    folder = tenant_model_dir(root, "acme")
    assert ModelStore(folder).save(*train(rows)) == "0001"
    # After: what it learned holds again, on enough attempts to judge by.
    _open(services, clock, 45, "pm_decline_do_not_honor", "do_not_honor", "d")
    _open(services, clock, 30, "pm_ok_2", "insufficient_funds", "o")
    skip_until(services, clock, clock.now() + timedelta(days=40))
    _assign(services, "acme", "smart")
    # Fitted on the attempts before `middle`, the new training gets the later ones wrong.
    # From cron, a tenant turned down is the exit code.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env["DUNWELL_DATABASE_URL"] = database_url
    cron = subprocess.run(
        [DUNWELL, "scoring", "train", "--all-tenants", "--days", "3650", "--model-dir", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cron.returncode == 1, cron.stderr
    assert "acme: version 0002 not promoted: log loss" in cron.stderr
    store = ModelStore(folder)
    assert store.versions() == ["0001", "0002"] and store.serving() == "0001"
    book = services.policies

    def round_() -> Outcome:
        return retrain_tenants(
            root, services.sessions, book.policies, book.default_name, 3650, clock.now()
        )["acme"]

    # The same attempts would give the same verdict: no version until new ones come.
    assert round_().status == "unchanged"
    _open(services, clock, 5, "pm_decline_do_not_honor", "do_not_honor", "late")
    skip_until(services, clock, clock.now() + timedelta(days=40))
    acme = round_()
    assert acme.status == "rejected", acme
    assert acme.text.startswith("version 0003 not promoted: log loss")
    assert acme.text.endswith("; version 0001 stays in use")
    assert store.serving() == "0001"
