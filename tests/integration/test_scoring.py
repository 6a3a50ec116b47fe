"""History import, training and the simulate flow with a learned `smart` arm.

`history import` keeps good rows and reports bad ones by line; `scoring train` writes a model
version with its manifest (AUC, calibration, importances); `scoring show` reads it back; and
`simulate --train-days` trains on a baseline period, then runs `smart` with 0 violations and
the same numbers for the same seed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from dunwell.policies import load_policies
from dunwell.scoring.features import history_features
from dunwell.scoring.history import (
    CASE_OUTCOMES,
    COLUMNS,
    HistoryRow,
    history_digest,
    read_history,
)
from dunwell.scoring.live import ModelsInUse, NewestModel, TenantModels
from dunwell.scoring.model import train
from dunwell.scoring.retrain import RoundFailed, learning_tenants, train_version
from dunwell.scoring.store import ModelStore, ModelStoreError, load_latest, tenant_model_dir
from dunwell.sim.harness import run_policy, simulate
from dunwell.sim.worlds.realistic import RealisticWorld

pytestmark = pytest.mark.integration

DUNWELL = str(Path(sys.executable).with_name("dunwell"))
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")} | (env or {})
    env["DUNWELL_MODEL_DIR"] = str(tmp_path / "models")
    return subprocess.run(
        [DUNWELL, *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def _history(
    path: Path, cases: int = 400, seed: int = 1, start: datetime = T0, prefix: str = "in"
) -> None:
    """Synthetic past attempts: charges in the morning after a payday pass more often."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(cases):
            failed = start + timedelta(days=rng.randrange(60), hours=rng.randrange(24))
            code = rng.choice(["insufficient_funds", "do_not_honor", "processing_error"])
            for n in range(1, 4):
                at = failed + timedelta(days=2 * n, hours=rng.randrange(24))
                p = 0.1 + (0.35 if at.day <= 3 else 0) + (0.15 if 8 <= at.hour < 12 else 0)
                writer.writerow(
                    {
                        "case_id": f"{prefix}_{i}",
                        "first_failed_at": failed.isoformat(),
                        "attempted_at": at.isoformat(),
                        "attempt_number": n,
                        "outcome": "approved" if rng.random() < p else "declined",
                        "amount_minor": rng.choice([999, 1999, 4999]),
                        "currency": "USD",
                        "decline_code": code,
                        "card_brand": rng.choice(["visa", "mastercard"]),
                        "country": "US",
                        "timezone": "UTC",
                        "segment": "consumer",
                    }
                )


def _add_bad_rows(path: Path) -> None:
    with path.open("a", newline="") as handle:
        handle.write("bad_1,2026-01-05T09:00:00+00:00,yesterday,1,declined,999,USD,,,,,,,\n")
        handle.write("bad_2,2026-01-05T09:00:00,2026-01-06T09:00:00+00:00,0,maybe,-5,USD,,,,,,,\n")


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=20)
    _add_bad_rows(source)
    done = _cli(tmp_path, "history", "import", str(source), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["kept"], summary["rejected"]) == (60, 2)
    reasons = {row["line"]: row["reason"] for row in summary["bad_rows"]}
    assert "attempted_at: 'yesterday' is not an ISO 8601 time" in reasons[62]
    assert "first_failed_at: '2026-01-05T09:00:00' has no UTC offset" in reasons[63]
    assert "attempt_number: 0 is below 1" in reasons[63]
    assert "outcome: 'maybe'" in reasons[63] and "amount_minor: -5 is below 0" in reasons[63]
    kept, bad = read_history(Path(summary["saved_as"]))
    assert len(kept) == 60 and not bad
    assert {row.lane for row in kept} <= {"retry_after_funds", "retry_soon", "provider_error"}


def test_import_refuses_a_file_without_the_required_columns(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    source.write_text("case_id,outcome\nx,approved\n")
    done = _cli(tmp_path, "history", "import", str(source))
    assert done.returncode == 2
    assert "missing required column(s) first_failed_at, attempted_at" in done.stderr


def _csv_as_parquet(source: Path, target: Path) -> None:
    """The same rows as typed Parquet columns, the way a data warehouse or pandas writes them:
    times as nanosecond UTC timestamps, integers as int64, the rest as strings."""
    with source.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    columns: dict[str, pa.Array] = {}
    for name in COLUMNS:
        values = [r[name] for r in records]
        if name in ("first_failed_at", "attempted_at"):
            # 789 ns past each whole hour: more precision than a Python datetime holds
            nanos = [int(datetime.fromisoformat(v).timestamp()) * 10**9 + 789 for v in values]
            columns[name] = pa.array(nanos, pa.timestamp("ns", tz="UTC"))
        elif name in ("attempt_number", "amount_minor"):
            columns[name] = pa.array([int(v) for v in values], pa.int64())
        else:
            columns[name] = pa.array(values, pa.string())
    pq.write_table(pa.table(columns), target)


def test_parquet_import_keeps_exactly_what_the_same_csv_keeps(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=30)
    _csv_as_parquet(source, tmp_path / "past.parquet")
    from_csv = json.loads(_cli(tmp_path, "history", "import", str(source), "--json").stdout)
    done = _cli(tmp_path, "history", "import", str(tmp_path / "past.parquet"), "--json")
    assert done.returncode == 0, done.stderr
    from_parquet = json.loads(done.stdout)
    assert (from_parquet["kept"], from_parquet["rejected"]) == (90, 0)
    saved_csv, saved_parquet = Path(from_csv["saved_as"]), Path(from_parquet["saved_as"])
    assert saved_parquet != saved_csv
    assert saved_parquet.read_text() == saved_csv.read_text()


def test_parquet_bad_rows_are_reported_by_row_and_left_out(tmp_path: Path) -> None:
    source = tmp_path / "past.parquet"
    good = "2026-01-05T09:00:00+00:00"
    table = pa.table(
        {
            "case_id": ["in_1", "in_2", "in_3", "in_4"],
            "first_failed_at": [good, good, "2026-01-05T09:00:00", good],
            "attempted_at": ["2026-01-08T09:00:00+00:00", "yesterday", good, good],
            "attempt_number": pa.array([1, 1, 1, 2], pa.int32()),
            "outcome": ["approved", "declined", "declined", "declined"],
            "amount_minor": pa.array([1999, 1999, 1999, None], pa.int64()),
            "notes": ["extra columns are ignored", "", "", ""],
        }
    )
    pq.write_table(table, source)
    rejects = tmp_path / "rejects.csv"
    done = _cli(tmp_path, "history", "import", str(source), "--json", "--rejects", str(rejects))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["kept"], summary["rejected"]) == (1, 3)
    reasons = {row["row"]: row["reason"] for row in summary["bad_rows"]}
    assert "attempted_at: 'yesterday' is not an ISO 8601 time" in reasons[2]
    assert "first_failed_at: '2026-01-05T09:00:00' has no UTC offset" in reasons[3]
    assert "amount_minor: '' is not an integer" in reasons[4]
    assert rejects.read_text().splitlines()[0] == "row,reason"
    kept, _ = read_history(Path(summary["saved_as"]))
    assert [(r.case_id, r.outcome, r.amount_minor) for r in kept] == [("in_1", "approved", 1999)]


def test_parquet_amounts_as_floats_are_refused_row_by_row(tmp_path: Path) -> None:
    source = tmp_path / "past.parquet"
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "case_id": ["in_1"],
                "first_failed_at": pa.array([at], pa.timestamp("us", tz="UTC")),
                "attempted_at": pa.array([at + timedelta(days=3)], pa.timestamp("us", tz="UTC")),
                "attempt_number": [1],
                "outcome": ["approved"],
                "amount_minor": [19.99],
            }
        ),
        source,
    )
    done = _cli(tmp_path, "history", "import", str(source), "--json")
    assert done.returncode == 1  # nothing kept
    reasons = [row["reason"] for row in json.loads(done.stdout)["bad_rows"]]
    assert reasons == ["amount_minor: '19.99' is not an integer"]


def test_a_file_that_is_not_parquet_or_lacks_columns_is_refused_whole(tmp_path: Path) -> None:
    broken = tmp_path / "past.parquet"
    broken.write_text("case_id,outcome\nx,approved\n")
    done = _cli(tmp_path, "history", "import", str(broken))
    assert done.returncode == 2
    assert "as Parquet" in done.stderr
    narrow = tmp_path / "narrow.parquet"
    pq.write_table(pa.table({"case_id": ["x"], "outcome": ["approved"]}), narrow)
    done = _cli(tmp_path, "history", "import", str(narrow))
    assert done.returncode == 2
    assert "missing required column(s) first_failed_at, attempted_at" in done.stderr
    assert not (tmp_path / "models" / "history").exists()


def test_train_writes_a_versioned_model_with_its_metrics(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source)
    assert _cli(tmp_path, "history", "import", str(source)).returncode == 0
    done = _cli(tmp_path, "scoring", "train", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["version"] == "0001" and manifest["rows"] == 1200
    validation = manifest["validation"]
    assert validation["rows"] == 300
    assert validation["auc"] > 0.6  # the planted pattern is learnable
    assert sum(b["rows"] for b in validation["calibration"]) == 300
    assert set(validation["feature_importances"]) == set(manifest["features"])
    importances = validation["feature_importances"]
    top = sorted(importances, key=lambda name: -importances[name])[:2]
    assert set(top) & {"day_of_month", "days_since_payday", "local_hour"}
    again = _cli(tmp_path, "scoring", "train", "--json")
    assert json.loads(again.stdout)["version"] == "0002"
    page = tmp_path / "model.html"
    shown = _cli(tmp_path, "scoring", "show", "--version", "0001", "--chart", str(page))
    assert shown.returncode == 0 and "AUC" in shown.stdout and "calibration" in shown.stdout
    per_attempt = manifest["recovered_per_attempt_minor"]["USD"]
    assert "recovered per attempt in this history" in shown.stdout
    assert f"{per_attempt} USD minor units" in shown.stdout
    assert "retrain it" not in shown.stdout
    assert "not learned from" not in shown.stdout  # no charge after a customer's action
    # A model trained before the base left out charges on dead cards: its manifest lacks
    # the key saying what the average is over, and `show` asks for a retraining.
    old = tmp_path / "models" / "0002" / "manifest.json"
    kept = json.loads(old.read_text())
    del kept["recovered_per_attempt_over"]
    old.write_text(json.dumps(kept))
    warned = _cli(tmp_path, "scoring", "show", "--version", "0002")
    assert warned.returncode == 0
    assert "retrain it (dunwell scoring train)" in " ".join(warned.stdout.split())
    # Loading it (as a service or a backtest does) still works, and says so in the log.
    used = _cli(tmp_path, "backtest", "--history", str(source), "--policy", "smart", "--json")
    assert used.returncode == 0, used.stderr
    assert "scoring.model_base_counts_dead_cards" in used.stderr
    assert json.loads(used.stdout)["model"] == "0002"  # the JSON on stdout stays whole
    figures = _svgs(page.read_text())
    assert len(figures) == 2  # the calibration plot and the importances
    dots = figures[0].findall("{http://www.w3.org/2000/svg}circle")
    assert len(dots) == len(validation["calibration"])
    assert [d.find("{http://www.w3.org/2000/svg}title").text.split(":")[0] for d in dots] == [
        f"{b['from']:.1f}-{b['to']:.1f}" for b in validation["calibration"]
    ]
    bars = figures[1].findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == len(importances)
    scorer = load_latest(tmp_path / "models")
    assert scorer is not None and scorer.version == "0002"


def test_a_model_keeps_what_an_attempt_recovered_on_average_per_currency(
    tmp_path: Path,
) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    eur = [replace(r, currency="EUR", amount_minor=10_000) for r in rows[:40]]
    # Charges on dead cards (a past schedule retried expired ones too): in USD they are left
    # out of the average, since USD has attempts where a retry is the remedy; GBP has only
    # those, so its average is over them.
    dead = [replace(r, lane="update_payment_method", outcome="declined") for r in rows[40:140]]
    gbp = [replace(r, currency="GBP") for r in dead[:30]]
    gbp[0] = replace(gbp[0], outcome="approved", amount_minor=3000)
    mixed = [*rows[40:], *eur, *dead, *gbp]
    assert all(r.lane in ("retry_soon", "retry_after_funds") for r in [*rows[40:], *eur])

    def average(currency: str, lanes: tuple[str, ...]) -> int:
        chosen = [r for r in mixed if r.currency == currency and r.lane in lanes]
        return round(sum(r.amount_minor for r in chosen if r.approved) / len(chosen))

    quiet = ("retry_soon", "retry_after_funds")
    expected = {
        "EUR": average("EUR", quiet),
        "GBP": 100,  # 3,000 over 30 attempts
        "USD": average("USD", quiet),
    }
    assert expected["USD"] > average("USD", (*quiet, "update_payment_method"))
    store = ModelStore(tmp_path / "models")
    version = store.save(*train(mixed))
    assert store.manifest(version)["recovered_per_attempt_minor"] == expected
    loaded = store.load(version)  # through the pickle and its hash check
    assert loaded.value_per_attempt("eur") == expected["EUR"]
    assert loaded.value_per_attempt("JPY") is None  # no attempt in yen: no relative bar
    live = NewestModel(tmp_path / "models")
    assert live.value_per_attempt("USD") == expected["USD"]


def _falling_history(path: Path) -> None:
    """300 issuer declines, each retried until approved or three times: 40% pass at the first
    retry, 20% of the rest at the second, 14 of the last 144 at the third."""
    approved_at = {1: range(0, 120), 2: range(120, 156), 3: range(156, 170)}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(300):
            failed = T0 + timedelta(hours=7 * i)
            for n in range(1, 4):
                ok = i in approved_at[n]
                writer.writerow(
                    {
                        "case_id": f"in_{i}",
                        "first_failed_at": failed.isoformat(),
                        "attempted_at": (failed + timedelta(days=2 * n)).isoformat(),
                        "attempt_number": n,
                        "outcome": "approved" if ok else "declined",
                        "amount_minor": 1999,
                        "currency": "USD",
                        "decline_code": "do_not_honor",
                        "card_brand": "visa",
                        "country": "US",
                        "timezone": "UTC",
                        "segment": "consumer",
                    }
                )
                if ok:
                    break


def test_attempts_deeper_than_the_history_are_scaled_by_the_last_fall_it_shows(
    tmp_path: Path,
) -> None:
    source = tmp_path / "past.csv"
    _falling_history(source)
    rows, bad = read_history(source)
    assert not bad
    store = ModelStore(tmp_path / "models")
    version = store.save(*train(rows))
    decay = round((14 / 144) / (36 / 180), 4)  # the third retry's rate over the second's
    depth = store.manifest(version)["depth"]
    assert depth == {"retry_soon": {"deepest_attempt": 3, "decay_per_attempt_beyond": decay}}
    scorer = store.load(version)
    last = history_features(rows)[-1]
    p = {n: scorer.score([replace(last, attempt_number=n)])[0] for n in (3, 4, 6)}
    # The trees answer attempt 3's probability for any deeper one; dunwell scales it down.
    assert p[4] == pytest.approx(p[3] * decay, abs=1e-4)
    assert p[6] == pytest.approx(p[3] * decay**3, abs=1e-4)
    assert scorer.depth_note("retry_soon", 3) is None
    assert scorer.depth_note("retry_soon", 5) == (
        f"attempt 5 is deeper than the history's 3: x{decay:.2f} per attempt beyond"
    )
    assert scorer.depth_note("retry_after_funds", 5) is None  # no history in that lane
    assert NewestModel(tmp_path / "models").depth_note("retry_soon", 4) is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env["DUNWELL_MODEL_DIR"] = str(tmp_path / "models")
    shown = subprocess.run(
        [DUNWELL, "scoring", "show"], env=env, capture_output=True, text=True, timeout=120
    )
    assert f"retry_soon: x{decay:.2f} per attempt beyond attempt 3" in shown.stdout


def test_a_full_memo_still_answers_every_row_it_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-running service fills the memo: the call that empties it must still answer the
    # rows it had found there a moment before (it used to raise KeyError for them).
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    scorer, _ = train(rows)
    features = history_features(rows)
    first = scorer.score(features[:3])
    monkeypatch.setattr("dunwell.scoring.model.MEMO_LIMIT", 2)
    again = scorer.score([*features[:3], features[3]])  # three remembered, one new
    assert again[:3] == first
    assert len(again) == 4


def test_charges_after_the_customer_acted_teach_the_model_nothing(tmp_path: Path) -> None:
    """A charge after the customer authenticated succeeds because they did, a day after the
    last decline or a week: the model learns timing from the lanes where a retry is the
    remedy only, so a history with such charges trains the very same model."""
    _history(tmp_path / "past.csv")
    rows, _ = read_history(tmp_path / "past.csv")
    rng = random.Random(7)
    authenticated = []
    for i in range(150):
        failed = T0 + timedelta(days=rng.randrange(60), hours=rng.randrange(24))
        common = {"first_failed_at": failed, "amount_minor": 1999, "currency": "USD"}
        common |= {"decline_code": "authentication_required", "lane": "authenticate"}
        authenticated.append(
            HistoryRow(
                f"sca_{i}",
                attempted_at=failed + timedelta(days=1, hours=2),
                attempt_number=1,
                outcome="approved" if i % 10 else "declined",
                **common,
            )
        )
    plain, _ = train(rows)
    mixed, manifest = train(rows + authenticated)
    assert manifest["rows"] == len(rows)  # the 150 are not learned from
    # An issuer retry a day after its decline: the same price from both.
    asked = history_features(rows)[:200]
    soon = [replace(f, hours_since_last_try=26.0) for f in asked if f.lane == "retry_soon"]
    assert soon and mixed.score(soon) == plain.score(soon)


def test_show_says_how_many_charges_after_the_customer_acted_were_not_learned_from(
    tmp_path: Path,
) -> None:
    source = tmp_path / "past.csv"
    _history(source)
    with source.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        for i in range(40):
            failed = T0 + timedelta(days=i)
            writer.writerow(
                {
                    "case_id": f"sca_{i}",
                    "first_failed_at": failed.isoformat(),
                    "attempted_at": (failed + timedelta(days=1)).isoformat(),
                    "attempt_number": 1,
                    "outcome": "approved",
                    "amount_minor": 1999,
                    "currency": "USD",
                    "decline_code": "authentication_required",
                }
            )
    assert _cli(tmp_path, "history", "import", str(source)).returncode == 0
    trained = _cli(tmp_path, "scoring", "train", "--json")
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads(trained.stdout)
    assert (manifest["rows"], manifest["rows_left_out_customer_action"]) == (1200, 40)
    assert manifest["cases"] == 440  # still counted as history
    shown = " ".join(_cli(tmp_path, "scoring", "show").stdout.split())
    assert "40 charges in lanes only the customer can fix" in shown
    assert "not learned from" in shown


def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    store = ModelStore(tmp_path / "models")
    version = store.save(*train(rows))
    (tmp_path / "models" / version / "model.pkl").write_bytes(b"not the model")
    with pytest.raises(ValueError, match="does not match its manifest"):
        store.load(version)


def test_a_model_trained_on_other_features_is_refused_with_a_way_out(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    store = ModelStore(tmp_path / "models")
    version = store.save(*train(rows))
    manifest_path = tmp_path / "models" / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["features"] = manifest["features"][:-3]  # as saved by an older dunwell
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="other features.*dunwell scoring train"):
        store.load(version)


def test_a_running_service_picks_up_a_newer_model_and_skips_a_broken_one(
    tmp_path: Path,
) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    clock = [0.0]
    live = NewestModel(tmp_path / "models", timedelta(minutes=1), lambda: clock[0])
    assert (live.rows, live.version) == (0, "none")  # no model yet: the rules decide
    store = ModelStore(tmp_path / "models")
    first = store.save(*train(rows))
    clock[0] += 30
    assert live.rows == 0  # looked less than a minute ago
    clock[0] += 31
    assert (live.version, live.rows) == (first, len(rows))
    features = history_features(rows[:3])
    assert live.score(features) == store.load(first).score(features)
    broken = store.save(*train(rows))
    (tmp_path / "models" / broken / "model.pkl").write_bytes(b"half copied")
    clock[0] += 61
    assert live.version == first  # the broken version is refused; the one in use stays


def test_each_past_attempt_knows_its_cases_previous_try(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=30)
    rows, _ = read_history(source)
    shuffled = list(reversed(rows))  # the order of a file says nothing
    features = history_features(shuffled)
    by_case: dict[str, list[datetime]] = {}
    for row in rows:
        by_case.setdefault(row.case_id, []).append(row.attempted_at)
    for row, f in zip(shuffled, features, strict=True):
        earlier = [t for t in by_case[row.case_id] if t < row.attempted_at]
        last = max(earlier) if earlier else row.first_failed_at
        assert f.hours_since_last_try == round((row.attempted_at - last).total_seconds() / 3600, 2)
    assert any(f.hours_since_last_try != f.hours_since_failure for f in features)


@pytest.fixture(scope="module")
def arms() -> dict[str, Any]:
    return simulate(
        customers=40,
        days=25,
        seed=2,
        policies=["baseline-fixed", "smart"],
        world="builtin:realistic",
        train_days=40,
        train_customers=250,
    )


def test_simulate_trains_on_a_baseline_period_then_runs_smart_without_violations(
    arms: dict[str, Any],
) -> None:
    training = arms["training"]
    assert training["policy"] == "baseline-fixed"
    # Enough history that smart uses the model, not its cold-start rules.
    assert training["rows"] >= load_policies()["smart"].timing.learned_min_rows
    assert training["auc"] is not None
    for name in ("baseline-fixed", "smart"):
        assert arms["policies"][name]["guardrail_violations"]["total"] == 0
        assert arms["policies"][name]["cases"] > 0
    curve = arms["policies"]["smart"]["recovered_by_day"]
    assert len(curve) == 25 and curve == sorted(curve)
    assert curve[-1] == arms["policies"]["smart"]["recovered_amount"]["amount_minor"]


def test_simulate_with_training_is_deterministic_for_a_seed(arms: dict[str, Any]) -> None:
    again = simulate(
        customers=40,
        days=25,
        seed=2,
        policies=["baseline-fixed", "smart"],
        world="builtin:realistic",
        train_days=40,
        train_customers=250,
    )
    assert again == arms


def test_the_chart_is_one_self_contained_page(arms: dict[str, Any], tmp_path: Path) -> None:
    from dunwell.sim.chart import to_html

    page = to_html(arms)
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page
    assert page.count("<polyline") == 2 and "smart" in page and "oracle" in page
    recovery, calibration, importances = _svgs(page)  # the trained model's two figures too
    circles = calibration.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == len(arms["training"]["calibration"])
    bars = importances.findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == len(arms["training"]["feature_importances"])


def _svgs(page: str) -> list[ElementTree.Element]:
    """Every inline SVG of a page, parsed: each must be well-formed XML."""
    chunks = page.split("<svg")[1:]
    return [ElementTree.fromstring("<svg" + c.split("</svg>")[0] + "</svg>") for c in chunks]


def test_the_cli_trains_evaluates_arms_and_writes_the_chart(tmp_path: Path) -> None:
    done = _cli(
        tmp_path,
        *"simulate --world builtin:realistic --customers 20 --days 20 --seed 3".split(),
        *"--arms baseline-fixed,smart --train-days 30 --train-customers 100 --json".split(),
        "--chart",
        str(tmp_path / "chart.html"),
        "--model-dir",
        str(tmp_path / "models"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result["policies"]) == ["baseline-fixed", "smart"]
    assert result["training"]["saved_as"] == "0001"
    assert (tmp_path / "models" / "0001" / "manifest.json").is_file()
    assert "<svg" in (tmp_path / "chart.html").read_text()


def test_too_little_training_history_is_a_clear_error(tmp_path: Path) -> None:
    done = _cli(
        tmp_path,
        *"simulate --world builtin:realistic --customers 5 --days 5 --seed 3".split(),
        *"--arms smart --train-days 2 --train-customers 3".split(),
    )
    assert done.returncode == 2
    assert "cannot train: the training period gave too little history" in done.stderr


def test_backtest_compares_a_policy_with_what_happened_with_an_interval(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=80)
    assert _cli(tmp_path, "scoring", "train", "--history", str(source)).returncode == 0
    runs = {}
    for policy in ("baseline-fixed", "smart"):
        done = _cli(tmp_path, "backtest", "--history", str(source), "--policy", policy, "--json")
        assert done.returncode == 0, done.stderr
        runs[policy] = json.loads(done.stdout)
    for result in runs.values():
        assert result["cases"] == 80 and result["model"] == "0001"
        low, high = result["change"]["revenue_lift_90pct"]
        assert low <= result["change"]["revenue_lift"] <= high
        assert 0 <= result["candidate_policy"]["expected_recovery_rate"] <= 1
        assert result["observed"]["recovered"] > 0
    # baseline-fixed retries three times, whatever the model says: at most 3 attempts a case.
    assert runs["baseline-fixed"]["candidate_policy"]["expected_attempts_per_case"] <= 3
    # The past is what happened, whatever the candidate: three charges a case here.
    assert runs["smart"]["past_schedule"] == runs["baseline-fixed"]["past_schedule"]
    past = runs["smart"]["past_schedule"]
    assert past["attempts_per_case"] == 3.0
    assert past["recovered_amount_minor"] == runs["smart"]["observed"]["recovered_amount_minor"]
    assert past["recovery_rate"] == runs["smart"]["observed"]["recovered"] / 80
    unknown = _cli(tmp_path, "backtest", "--history", str(source), "--policy", "nope")
    assert unknown.returncode == 2 and "unknown policy 'nope'" in unknown.stderr


def _with_case_ends(source: Path, target: Path, blank: bool = False) -> dict[str, str]:
    """`source` with how each case ended: a retry's approval, else (alternately) the
    customer's own payment an hour after the case's last charge, or the policy's end three
    weeks after the failure. `blank`: the same rows with the two columns left empty."""
    with source.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    by_case: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_case.setdefault(record["case_id"], []).append(record)
    ends: dict[str, str] = {}
    kept: list[dict[str, str]] = []
    for index, (case_id, rows) in enumerate(sorted(by_case.items())):
        last = max(rows, key=lambda r: r["attempted_at"])
        approved = sorted(r["attempted_at"] for r in rows if r["outcome"] == "approved")
        if approved:
            ending, closed = "recovered_by_retry", approved[0]
            rows = [r for r in rows if r["attempted_at"] <= closed]  # none after it
        elif index % 2:
            ending = "recovered_by_customer"
            closed = (datetime.fromisoformat(last["attempted_at"]) + timedelta(hours=1)).isoformat()
        else:
            ending = "churned"
            failed = datetime.fromisoformat(rows[0]["first_failed_at"])
            closed = (failed + timedelta(days=21)).isoformat()
        ends[case_id] = ending
        for row in rows:
            if not blank:
                row["case_outcome"], row["case_closed_at"] = ending, closed
            kept.append(row)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    return ends


def test_backtest_stops_a_policys_retries_where_the_customer_ended_the_case(
    tmp_path: Path,
) -> None:
    source, ended, unknown = (tmp_path / n for n in ("past.csv", "ended.csv", "unknown.csv"))
    _history(source, cases=80)
    ends = _with_case_ends(source, ended)
    _with_case_ends(source, unknown, blank=True)
    assert _cli(tmp_path, "scoring", "train", "--history", str(ended)).returncode == 0
    runs = {}
    for name, path in (("ended", ended), ("unknown", unknown)):
        done = _cli(tmp_path, "backtest", "--history", str(path), "--policy", "smart", "--json")
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout)
    paid = sum(1 for e in ends.values() if e == "recovered_by_customer")
    assert paid > 5
    with_ends, without = runs["ended"], runs["unknown"]
    assert with_ends["case_ends"] == {"known": 80, "by_the_customer": paid}
    assert without["case_ends"] == {"known": 0, "by_the_customer": 0}
    # smart plans retries after the hour the customer paid in: they no longer count.
    new, old = with_ends["candidate_policy"], without["candidate_policy"]
    assert new["expected_attempts_per_case"] < old["expected_attempts_per_case"]
    assert new["expected_recovered_amount_minor"] < old["expected_recovered_amount_minor"]
    # The past is what happened, with or without the columns.
    past = with_ends["past_schedule"]
    assert past["recovered_amount_minor"] == with_ends["observed"]["recovered_amount_minor"]
    assert past["attempts_per_case"] == without["past_schedule"]["attempts_per_case"]
    # All recovered revenue counts the customers' payments whole, under either schedule.
    customer_amount = with_ends["observed"]["paid_by_the_customer_amount_minor"]
    assert with_ends["observed"]["paid_by_the_customer"] == paid
    assert past["recovered_amount_with_customer_payments_minor"] == (
        past["recovered_amount_minor"] + customer_amount
    )
    whole = new["expected_recovered_amount_with_customer_payments_minor"]
    assert new["expected_recovered_amount_minor"] < whole
    assert whole <= new["expected_recovered_amount_minor"] + customer_amount
    low, high = with_ends["change"]["all_revenue_lift_90pct"]
    assert low <= with_ends["change"]["all_revenue_lift"] <= high
    assert (
        "no retry after the customer ended the case (paid, cancelled, disputed)"
        in (with_ends["assumptions"])
    )
    assert without["change"]["all_revenue_lift"] is None
    assert any("how cases ended is not in the history" in a for a in without["assumptions"])
    said = _cli(tmp_path, "backtest", "--history", str(ended), "--policy", "smart")
    assert said.returncode == 0, said.stderr
    assert f"all recovered revenue ({paid} cases the customer paid included)" in said.stdout


def test_backtest_says_how_much_the_candidate_leaves_to_the_customer(tmp_path: Path) -> None:
    source, mixed = tmp_path / "past.csv", tmp_path / "mixed.csv"
    _history(source, cases=60)
    with source.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    expired = {r["case_id"] for r in records if int(r["case_id"].split("_")[1]) % 4 == 0}
    for record in records:
        if record["case_id"] in expired:  # a card the customer must replace
            record["decline_code"] = "expired_card"
    with mixed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    assert _cli(tmp_path, "scoring", "train", "--history", str(mixed)).returncode == 0
    done = _cli(tmp_path, "backtest", "--history", str(mixed), "--policy", "smart", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    lanes = result["by_lane"]
    # smart never retries a card that must be replaced: it asks the customer.
    assert lanes["update_payment_method"]["cases"] == len(expired) == 15
    assert lanes["update_payment_method"]["candidate_retries_none"] == len(expired)
    assert lanes["update_payment_method"]["candidate_expected_recovered_amount_minor"] == 0
    tried = [r for r in records if r["case_id"] in expired]
    rate = sum(r["outcome"] == "approved" for r in tried) / len(tried)
    assert result["customer_lane_approval_rates"] == {"update_payment_method": round(rate, 4)}
    firsts = [r for r in tried if r["attempt_number"] == "1"]
    assert sum(lane["cases"] for lane in lanes.values()) == result["cases"]
    total = sum(lane["candidate_expected_recovered_amount_minor"] for lane in lanes.values())
    assert abs(total - result["candidate_policy"]["expected_recovered_amount_minor"]) <= len(lanes)
    left = result["not_retried"]
    # A case's amount is its first charge's (this synthetic history draws one per charge).
    amount = sum(int(r["amount_minor"]) for r in firsts)
    assert left["cases"] >= len(expired) and left["amount_minor"] >= amount
    share = left["share_of_failed_amount"]
    said = f"{share:.0%} of the failed amount gets no retry from the candidate"
    assert any(said in line for line in result["assumptions"])
    # baseline-fixed retries every one of these lanes. The model does not learn from charges
    # on a card the customer must replace: its three there are priced at the rate the
    # history shows in that lane, independently.
    fixed = _cli(
        tmp_path, "backtest", "--history", str(mixed), "--policy", "baseline-fixed", "--json"
    )
    by_fixed = json.loads(fixed.stdout)
    assert by_fixed["not_retried"]["cases"] == 0
    priced = sum(int(r["amount_minor"]) * (1 - (1 - rate) ** 3) for r in firsts)
    expired_lane = by_fixed["by_lane"]["update_payment_method"]
    assert abs(expired_lane["candidate_expected_recovered_amount_minor"] - priced) < 1


def test_the_case_columns_are_checked_and_read_back_as_written(tmp_path: Path) -> None:
    source, ended = tmp_path / "past.csv", tmp_path / "ended.csv"
    _history(source, cases=10)
    _with_case_ends(source, ended)
    with ended.open("a", newline="") as handle:
        start = "bad_{},2026-01-05T09:00:00+00:00,2026-01-06T09:00:00+00:00,1,declined,999,USD"
        rest = ",,,,,,,"
        handle.write(start.format(1) + rest + ",refunded,2026-01-07T09:00:00+00:00\n")
        handle.write(start.format(2) + rest + ",canceled,\n")
        handle.write(start.format(3) + rest + ",churned,2026-01-05T10:00:00+00:00\n")
        handle.write(start.format(4) + rest + ",open,2026-01-07T09:00:00+00:00\n")
    done = _cli(tmp_path, "history", "import", str(ended), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    reasons = [row["reason"] for row in summary["bad_rows"]]
    assert len(reasons) == 4 and summary["kept"] == len(ended.read_text().splitlines()) - 5
    assert "case_outcome: 'refunded' is not one of" in reasons[0]
    assert "case_closed_at: required with case_outcome 'canceled'" in reasons[1]
    assert "case_closed_at: before attempted_at" in reasons[2]
    assert "case_closed_at: given, but case_outcome does not say how it ended" in reasons[3]
    written, _ = read_history(ended)
    saved, bad = read_history(Path(summary["saved_as"]))
    assert not bad and saved == written
    assert {r.case_outcome for r in saved} >= {"recovered_by_customer", "churned"}
    assert all(r.case_closed_at is not None and r.case_closed_at.tzinfo for r in saved)
    # The model does not read them: the same attempts with other ends, the same digest.
    blank = [replace(r, case_outcome="", case_closed_at=None) for r in saved]
    assert history_digest(blank) == history_digest(saved)


def test_a_simulations_history_says_how_each_case_ended() -> None:
    run = run_policy(partial(RealisticWorld, 300, 40, 5), "baseline-fixed")
    by_case: dict[str, list[HistoryRow]] = {}
    for row in run.history:
        by_case.setdefault(row.case_id, []).append(row)
    ended: dict[str, int] = {}
    for rows in by_case.values():
        assert len({(r.case_outcome, r.case_closed_at) for r in rows}) == 1  # per case
        outcome, closed = rows[0].case_outcome, rows[0].case_closed_at
        ended[outcome] = ended.get(outcome, 0) + 1
        assert outcome in CASE_OUTCOMES and (closed is None) == (outcome == "open")
        assert closed is None or all(r.attempted_at <= closed for r in rows)
        if outcome == "recovered_by_retry":
            assert sorted(rows, key=lambda r: r.attempted_at)[-1].approved
        elif outcome != "recovered_by_customer":  # whose charge after an authentication passes
            assert not any(r.approved for r in rows), (outcome, rows)
    assert {"recovered_by_retry", "recovered_by_customer", "churned"} <= set(ended), ended


def test_scheduled_retraining_adds_a_version_only_when_the_history_grew(tmp_path: Path) -> None:
    first, second = tmp_path / "past.csv", tmp_path / "later.csv"
    _history(first)
    _history(second, cases=100, seed=2)
    assert _cli(tmp_path, "history", "import", str(first)).returncode == 0
    # Two rounds a second apart on the same history: one version, then a skipped round.
    ran = _cli(tmp_path, "scoring", "train", "--every", "1s", "--rounds", "2", "--json")
    assert ran.returncode == 0, ran.stderr
    assert ModelStore(tmp_path / "models").versions() == ["0001"]
    assert json.loads(ran.stdout)["version"] == "0001"
    assert "round 2: no attempt added since the newest model" in ran.stderr
    # New attempts imported meanwhile: the next round trains on them all.
    assert _cli(tmp_path, "history", "import", str(second)).returncode == 0
    ran = _cli(tmp_path, "scoring", "train", "--every", "1s", "--rounds", "1", "--json")
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads(ran.stdout)
    assert (manifest["version"], manifest["rows"]) == ("0002", 1200 + 300)
    assert ModelStore(tmp_path / "models").versions() == ["0001", "0002"]


def test_a_failed_round_is_logged_and_the_schedule_goes_on(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    _history(small, cases=10)  # 30 attempts: too few to train on
    ran = _cli(
        tmp_path, "scoring", "train", "--history", str(small), "--every", "1s", "--rounds", "2"
    )
    assert ran.returncode == 0, ran.stderr
    assert "round 1: cannot train: 30 attempts" in ran.stderr
    assert "round 2: cannot train" in ran.stderr
    assert "scoring.retrain_failed" in ran.stderr
    assert ModelStore(tmp_path / "models").versions() == []
    # Once, without a schedule, the same failure is the command's exit code.
    once = _cli(tmp_path, "scoring", "train", "--history", str(small))
    assert once.returncode == 2 and "cannot train: 30 attempts" in once.stderr


def test_schedule_options_are_checked_before_any_round(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=50)
    for args, message in (
        (("--rounds", "2"), "--rounds needs --every"),
        (("--every", "soon"), "is not a duration"),
        (("--every", "0s"), "longer than zero"),
    ):
        ran = _cli(tmp_path, "scoring", "train", "--history", str(source), *args)
        assert ran.returncode == 2 and message in ran.stderr, (args, ran.stderr)
    assert not (tmp_path / "models").exists() or ModelStore(tmp_path / "models").versions() == []
    # No history configured at all can never work: the schedule stops at once.
    ran = _cli(tmp_path, "scoring", "train", "--every", "1s", "--rounds", "3")
    assert ran.returncode == 2 and "no history" in ran.stderr


def test_a_version_half_written_is_never_seen(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source)
    rows, _ = read_history(source)
    scorer, manifest = train(rows)
    root = tmp_path / "models"
    store = ModelStore(root)
    # What a training killed while writing leaves: a hidden folder, manifest included.
    stale = root / ".0001.partial"
    stale.mkdir(parents=True)
    (stale / "manifest.json").write_text("{")
    assert store.versions() == []
    assert NewestModel(root).current() is None
    assert store.save(scorer, manifest) == "0001"
    assert store.versions() == ["0001"] and not stale.exists()
    assert NewestModel(root).current() is not None


def test_only_the_newest_versions_keep_their_model_files(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    root = tmp_path / "models"
    for _ in range(3):
        train_version(root, rows, {}, skip_unchanged=False, keep=2)
    store = ModelStore(root)
    # Every manifest stays (the audit trail names versions); the oldest file is gone.
    assert store.versions() == ["0001", "0002", "0003"]
    assert not (root / "0001" / "model.pkl").exists()
    assert store.manifest("0001")["rows"] == len(rows)
    with pytest.raises(ModelStoreError, match="model file was pruned"):
        store.load("0001")
    assert store.load("0002").version == "0002"
    assert NewestModel(root).version == "0003"
    # Through the CLI, DUNWELL_MODEL_KEEP decides.
    ran = _cli(
        tmp_path, "scoring", "train", "--history", str(source), env={"DUNWELL_MODEL_KEEP": "1"}
    )
    assert ran.returncode == 0, ran.stderr
    assert [v for v in store.versions() if (root / v / "model.pkl").exists()] == ["0004"]


def _mangled(source: Path, target: Path) -> None:
    """The same attempts with their outcomes shuffled among them: an import gone wrong, with
    the right approval rate and no signal left."""
    with source.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    outcomes = [r["outcome"] for r in records]
    random.Random(7).shuffle(outcomes)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for record, outcome in zip(records, outcomes, strict=True):
            writer.writerow(record | {"outcome": outcome})


def test_the_gate_keeps_the_model_in_use_when_a_new_training_predicts_worse(
    tmp_path: Path,
) -> None:
    past, fresh, mangled = tmp_path / "past.csv", tmp_path / "fresh.csv", tmp_path / "bad.csv"
    _history(past)
    # 250 cases failing three months later: attempts neither model has seen.
    _history(fresh, cases=250, seed=3, start=T0 + timedelta(days=90), prefix="later")
    _mangled(past, mangled)
    root = tmp_path / "models"
    store = ModelStore(root)
    first = _cli(tmp_path, "scoring", "train", "--history", str(past), "--json")
    assert first.returncode == 0, first.stderr
    assert (
        "version 0001 promoted, not compared: the first version of this folder; it is in use"
        in first.stderr
    )
    # The past attempts, mangled, and the fresh ones: fitted on the mangled attempts up to
    # version 0001's last, the new training predicts the fresh ones worse than 0001 does.
    bad = _cli(
        tmp_path, "scoring", "train", "--history", str(mangled), "--history", str(fresh), "--json"
    )
    assert bad.returncode == 1, bad.stderr
    assert "version 0002 not promoted: log loss" in bad.stderr
    assert "on the 750 attempts since its history; version 0001 stays in use" in bad.stderr
    gate = json.loads(bad.stdout)["gate"]
    assert (gate["promoted"], gate["compared"], gate["champion"]) == (False, True, "0001")
    worse, kept = gate["challenger_metrics"], gate["champion_metrics"]
    assert worse["log_loss"] > kept["log_loss"] * 1.02
    assert worse["auc"] < kept["auc"]
    # Saved for the record, never served: the service and the store keep 0001.
    assert store.versions() == ["0001", "0002"] and store.serving() == "0001"
    assert NewestModel(root).version == "0001" and store.load().version == "0001"
    # /metrics tells whoever watches it that a newer version was turned down.
    assert _held_back(root) == {("acme", "imported", "0001"): 1.0}
    shown = _cli(tmp_path, "scoring", "show", "--version", "0002")
    assert "promotion gate: not promoted: log loss" in " ".join(shown.stdout.split())
    # The right history passes: fitted on the same attempts as 0001, it predicts alike.
    good = _cli(
        tmp_path, "scoring", "train", "--history", str(past), "--history", str(fresh), "--json"
    )
    assert good.returncode == 0, good.stderr
    gate = json.loads(good.stdout)["gate"]
    assert (gate["promoted"], gate["compared"], gate["fresh_rows"]) == (True, True, 750)
    assert "version 0003 promoted: log loss" in good.stderr
    assert store.serving() == "0003" and NewestModel(root).version == "0003"
    assert _held_back(root) == {("acme", "imported", "0003"): 0.0}
    # A person may overrule the gate; the manifest says so.
    forced = _cli(
        tmp_path,
        "scoring",
        "train",
        "--history",
        str(mangled),
        "--history",
        str(fresh),
        "--no-gate",
        "--json",
    )
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["gate"] == {
        "promoted": True,
        "compared": False,
        "forced": True,
        "reason": "promoted without a comparison (--no-gate)",
    }
    assert store.serving() == "0004"


def _held_back(root: Path) -> dict[tuple[str, ...], float]:
    """`dunwell_retry_model_versions_held_back` as `/metrics` shows it, for a tenant that
    has no model of its own (so the folder's, trained on imported history, times it)."""
    models = TenantModels(root)
    models.for_tenant("acme")
    collected = ModelsInUse(models, lambda: T0).collect()
    return {
        tuple(sample.labels[k] for k in ("tenant", "source", "version")): sample.value
        for family in collected
        if family.name == "dunwell_retry_model_versions_held_back"
        for sample in family.samples
    }


def test_a_scrape_without_the_database_still_lists_the_model_folders(tmp_path: Path) -> None:
    """The tenants on the imported model come from the database; when it does not answer,
    `/metrics` still answers with the tenants whose own folders it can read."""
    root = tmp_path / "models"
    _history(tmp_path / "acme.csv")
    rows, _ = read_history(tmp_path / "acme.csv")
    ModelStore(tenant_model_dir(root, "acme")).save(*train(rows))
    gone = sessionmaker(create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite'}"))
    policies = load_policies(None)
    listing = partial(learning_tenants, gone, policies, "smart")
    with pytest.raises(SQLAlchemyError):
        listing()  # the database really is away
    collected = ModelsInUse(TenantModels(root), lambda: T0, listing).collect()
    assert [
        (sample.labels["tenant"], sample.labels["source"])
        for family in collected
        if family.name == "dunwell_retry_model_rows"
        for sample in family.samples
    ] == [("acme", "own")]


def test_too_few_fresh_attempts_are_not_a_comparison(tmp_path: Path) -> None:
    past, fresh = tmp_path / "past.csv", tmp_path / "fresh.csv"
    _history(past)
    _history(fresh, cases=20, seed=3, start=T0 + timedelta(days=90), prefix="later")
    rows, _ = read_history(past)
    later, _ = read_history(fresh)
    root = tmp_path / "models"
    assert train_version(root, rows, {}, skip_unchanged=False).promoted  # type: ignore[union-attr]
    saved = train_version(root, rows + later, {}, skip_unchanged=False)
    assert saved is not None and saved.promoted
    assert saved.gate["compared"] is False
    assert saved.gate["reason"].startswith(
        "promoted, not compared: 60 attempts since version 0001's"
    )
    assert ModelStore(root).serving() == "0002"


def test_pruning_never_takes_the_model_in_use(tmp_path: Path) -> None:
    past, fresh, mangled = tmp_path / "past.csv", tmp_path / "fresh.csv", tmp_path / "bad.csv"
    _history(past)
    _history(fresh, cases=250, seed=3, start=T0 + timedelta(days=90), prefix="later")
    _mangled(past, mangled)
    good, _ = read_history(past)
    bad = read_history(mangled)[0] + read_history(fresh)[0]
    root = tmp_path / "models"
    train_version(root, good, {}, skip_unchanged=False, keep=1)
    for _ in range(2):
        saved = train_version(root, bad, {}, skip_unchanged=False, keep=1)
        assert saved is not None and not saved.promoted
    # Only the newest keeps its file, and the one in use, older, whatever `keep` says.
    store = ModelStore(root)
    assert [v for v in store.versions() if (root / v / "model.pkl").exists()] == ["0001", "0003"]
    assert store.serving() == "0001" and NewestModel(root).version == "0001"


def test_a_pinned_version_serves_until_unpinned_whatever_retraining_adds(tmp_path: Path) -> None:
    past, fresh = tmp_path / "past.csv", tmp_path / "fresh.csv"
    _history(past)
    _history(fresh, cases=250, seed=3, start=T0 + timedelta(days=90), prefix="later")
    old, _ = read_history(past)
    new = old + read_history(fresh)[0]
    root = tmp_path / "models"
    store = ModelStore(root)
    train_version(root, old, {}, skip_unchanged=False)
    train_version(root, new, {}, skip_unchanged=False)
    running = NewestModel(root, check_every=timedelta(0))  # a service's view, checked per call
    assert running.version == "0002"
    # A rollback: 0001 serves, the running service switches back.
    pinned = _cli(tmp_path, "scoring", "pin", "0001", "--reason", "0002 times retries badly")
    assert pinned.returncode == 0, pinned.stderr
    assert "version 0001 pinned: a running service uses it within a minute" in pinned.stderr
    assert running.version == "0001"
    listed = json.loads(_cli(tmp_path, "scoring", "versions", "--json").stdout)
    assert listed["in_use"] == "0001" and listed["pinned"]["reason"] == "0002 times retries badly"
    assert [(v["version"], v["in_use"]) for v in listed["versions"]] == [
        ("0001", True),
        ("0002", False),
    ]
    # Retraining goes on: its gate compares with the pinned version, which stays in use, and
    # pruning keeps its file.
    saved = train_version(root, new, {"note": "again"}, skip_unchanged=False, keep=1)
    assert saved is not None and saved.gate["champion"] == "0001" and saved.promoted
    assert store.serving() == "0001" and running.version == "0001"
    assert (root / "0001" / "model.pkl").is_file() and not (root / "0002" / "model.pkl").exists()
    table = _cli(tmp_path, "scoring", "versions", env={"COLUMNS": "300"})
    assert "0001 (in use, pinned)" in table.stdout and "pruned" in table.stdout
    # Nothing pruned or unknown can be pinned.
    for version, message in (("0002", "its model file was pruned"), ("0009", "no model version")):
        refused = _cli(tmp_path, "scoring", "pin", version)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    unpinned = _cli(tmp_path, "scoring", "unpin")
    assert "unpinned 0001; in use now: 0003" in unpinned.stderr
    assert running.version == "0003"
    assert "nothing pinned" in _cli(tmp_path, "scoring", "unpin").stderr


def test_a_pin_naming_a_version_that_is_gone_keeps_the_model_in_use(tmp_path: Path) -> None:
    source = tmp_path / "past.csv"
    _history(source, cases=100)
    rows, _ = read_history(source)
    root = tmp_path / "models"
    train_version(root, rows, {}, skip_unchanged=False)
    running = NewestModel(root, check_every=timedelta(0))
    assert running.version == "0001"
    (root / "pinned.json").write_text(json.dumps({"version": "0007"}))
    assert running.version == "0001"  # logged (scoring.pin_refused), not followed
    listed = _cli(tmp_path, "scoring", "versions")
    assert listed.returncode == 2 and "pins version '0007'" in listed.stderr
    # A round refuses to guess which model the gate should compare with.
    with pytest.raises(RoundFailed, match="cannot tell the version in use"):
        train_version(root, rows, {}, skip_unchanged=False)
    # Without the gate it saves, and keeps every model file rather than guess which to keep.
    saved = train_version(root, rows, {}, skip_unchanged=False, keep=1, gate=False)
    assert saved is not None and saved.version == "0002"
    assert (root / "0001" / "model.pkl").is_file()
