"""The simulator: a built-in world through the real engine, judged by its own guardrail check.

Small worlds keep this file fast; the CLI run is compared byte for byte with an in-process
run, so determinism holds across processes (and their different string hash seeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dunwell.domain import decide as decide_module
from dunwell.domain import planning as planning_module
from dunwell.domain.guardrails import Verdict
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane
from dunwell.policies import load_policies
from dunwell.providers.base import ChargeResult
from dunwell.sim.harness import DEFAULT_POLICIES, run_arms, run_policy, simulate
from dunwell.sim.issuer import CustomerState, answer, decline
from dunwell.sim.log import Entry, Kind, Outcome
from dunwell.sim.population import Profile
from dunwell.sim.report import to_json
from dunwell.sim.violations import KINDS, count_violations
from dunwell.sim.worlds import basic as world_module

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def sixty() -> dict[str, Any]:
    return simulate(customers=60, days=40, seed=1)


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return simulate(customers=30, days=30, seed=3)


def test_both_policies_recover_some_and_lose_some(sixty: dict[str, Any]) -> None:
    assert list(sixty["policies"]) == list(DEFAULT_POLICIES)
    for name, m in sixty["policies"].items():
        assert m["recovered"] >= 1, name
        assert m["churned"] >= 1, name
        assert m["attempts"] > 0 and m["notices"] > 0, name


def test_no_guardrail_violations(sixty: dict[str, Any]) -> None:
    for name, m in sixty["policies"].items():
        assert m["guardrail_violations"] == {"total": 0, **dict.fromkeys(KINDS, 0)}, name


def test_every_case_is_accounted_for(sixty: dict[str, Any]) -> None:
    for name, m in sixty["policies"].items():
        ended = m["recovered"] + m["churned"] + sum(m["other"].values()) + m["open"]
        assert ended == m["cases"] == 60, name
        recovered, failed = m["recovered_amount"], m["failed_amount"]
        assert recovered["currency"] == failed["currency"] == "USD"
        assert 0 < recovered["amount_minor"] < failed["amount_minor"], name
    # The same population failed under every policy: the same total at stake.
    assert len({m["failed_amount"]["amount_minor"] for m in sixty["policies"].values()}) == 1


def test_same_seed_same_numbers(small: dict[str, Any]) -> None:
    assert simulate(customers=30, days=30, seed=3) == small


def test_another_seed_other_numbers(small: dict[str, Any]) -> None:
    other = simulate(customers=30, days=30, seed=4)
    assert other["policies"] != small["policies"]


def test_cli_json_matches_in_process_run_byte_for_byte(small: dict[str, Any]) -> None:
    args = "simulate --customers 30 --days 30 --seed 3 --json".split()
    dunwell = os.path.join(os.path.dirname(sys.executable), "dunwell")
    entry = [dunwell] if os.path.exists(dunwell) else [sys.executable, "-m", "dunwell.cli"]
    command = [*entry, *args]
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # another hash seed than this process
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["parameters"]["customers"] == 30
    assert parsed == small
    assert done.stdout == to_json(small) + "\n"


# --- the in-memory store: the same engine, the same bytes -------------------------------------

# Small worlds that still exercise every path: paydays and outages (realistic), a second
# provider and its circuit (two-psp), and a trained model driving the `smart` arm.
STORE_RUNS: dict[str, dict[str, Any]] = {
    "basic": dict(customers=40, days=30, seed=3),
    "realistic": dict(customers=60, days=45, seed=7, world="builtin:realistic"),
    "two-psp": dict(customers=60, days=45, seed=2, world="builtin:realistic-two-psp"),
    "trained": dict(
        customers=40,
        days=25,
        seed=2,
        policies=["baseline-fixed", "default", "smart"],
        world="builtin:realistic",
        train_days=40,
        train_customers=250,
    ),
}


@pytest.mark.parametrize("name", list(STORE_RUNS))
def test_the_memory_store_gives_the_sqlite_json_byte_for_byte(name: str) -> None:
    on_sqlite = simulate(**STORE_RUNS[name], store="sqlite")
    on_memory = simulate(**STORE_RUNS[name], store="memory")
    assert to_json(on_memory) == to_json(on_sqlite)
    # Not a comparison of two empty runs: cases were charged, notified and recovered.
    for arm in on_memory["policies"].values():
        assert arm["attempts"] > 0 and arm["notices"] > 0 and arm["recovered"] > 0
    if "training" in on_memory:
        assert on_memory["training"]["rows"] >= load_policies()["smart"].timing.learned_min_rows


def test_policies_in_parallel_processes_give_the_same_bytes() -> None:
    run = STORE_RUNS["trained"]  # three arms on two workers; the model goes with the fork
    assert to_json(simulate(**run, workers=2)) == to_json(simulate(**run, workers=1))


def test_training_rows_are_built_only_when_asked_for() -> None:
    def world() -> Any:
        return world_module.BuiltinWorld(seed=3, customers=30, days=30, start=T0)

    kept = run_policy(world, "default")
    skipped = run_policy(world, "default", history=False)
    assert kept.history and skipped.history == ()
    assert to_json(skipped.as_dict()) == to_json(kept.as_dict())
    arms = run_arms(world, ["default"], None, "memory", workers=1)
    assert arms["default"].history == ()
    assert to_json(arms["default"].as_dict()) == to_json(kept.as_dict())


def test_a_run_can_leave_its_state_to_the_caller_instead_of_freeing_it() -> None:
    def world() -> Any:
        return world_module.BuiltinWorld(seed=3, customers=30, days=30, start=T0)

    kept: list[object] = []
    result = run_policy(world, "default", history=False, keep=kept)
    assert any(isinstance(state, world_module.BuiltinWorld) for state in kept)
    assert to_json(result.as_dict()) == to_json(run_policy(world, "default").as_dict())


def test_an_unknown_store_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown store"):
        simulate(customers=2, days=2, seed=1, store="postgres")


# --- the violations check itself: each rule catches a log that breaks it --------------------


def _initial(at: datetime, credential: str = "fp_a", brand: str = "visa", **kw: Any) -> Entry:
    kw.setdefault("code", "insufficient_funds")
    return Entry(
        at, Kind.INITIAL_FAILURE, "cus_a", credential, brand, outcome=Outcome.DECLINED, **kw
    )


def _charge(
    at: datetime,
    n: int,
    credential: str = "fp_a",
    brand: str = "visa",
    outcome: Outcome = Outcome.DECLINED,
    **kw: Any,
) -> Entry:
    if outcome is Outcome.DECLINED:
        kw.setdefault("code", "insufficient_funds")
    return Entry(at, Kind.CHARGE, "cus_a", credential, brand, f"att_{n}", outcome, **kw)


def _series(brand: str, count: int, step: timedelta) -> list[Entry]:
    """The initial failure and then charges, one every `step`: `count` attempts in all."""
    return [_initial(T0, brand=brand)] + [
        _charge(T0 + step * i, i, brand=brand) for i in range(1, count)
    ]


BROKEN: dict[str, list[Entry]] = {
    "visa_30d_cap": _series("visa", 16, timedelta(days=1)),
    "mastercard_24h_cap": _series("mastercard", 11, H),
    "mastercard_30d_cap": _series("mastercard", 36, timedelta(hours=19)),
    "charge_after_never_retry": [_initial(T0, code="stolen_card"), _charge(T0 + 48 * H, 1)],
    "charge_before_advice_delay": [
        _initial(T0, brand="mastercard"),
        _charge(T0 + 6 * H, 1, brand="mastercard", advice="25"),
        _charge(T0 + 20 * H, 2, brand="mastercard"),
    ],
    "duplicate_charge": [
        _initial(T0),
        _charge(T0 + 24 * H, 1, outcome=Outcome.APPROVED),
        _charge(T0 + 25 * H, 2, outcome=Outcome.APPROVED),
    ],
    "charge_after_paid": [
        _initial(T0),
        Entry(T0 + H, Kind.PAID_OUT_OF_BAND, "cus_a"),
        _charge(T0 + 24 * H, 1),
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_check_flags_a_log_that_breaks_the_rule(kind: str) -> None:
    found = count_violations(BROKEN[kind])
    assert found[kind] >= 1, found
    assert sum(found.values()) == found[kind], found  # and nothing else


def test_never_retry_by_mastercard_advice_and_on_a_later_answer() -> None:
    log = [
        _initial(T0, brand="mastercard"),
        _charge(T0 + 24 * H, 1, brand="mastercard", code="do_not_honor", advice="03"),
        _charge(T0 + 72 * H, 2, brand="mastercard"),
        _charge(T0 + 96 * H, 3, brand="mastercard", outcome=Outcome.ERROR),
    ]
    assert count_violations(log)["charge_after_never_retry"] == 2


def test_a_log_at_every_limit_is_clean() -> None:
    card = "fp_new"
    log = [
        *_series("visa", 15, timedelta(days=1)),  # exactly the Visa cap
        # Provider failures never reached the network: not counted against the cap.
        _charge(T0 + 15 * timedelta(days=1), 90, outcome=Outcome.ERROR),
        _initial(T0, card, "mastercard"),
        _charge(T0 + H, 101, card, "mastercard", advice="25"),
        _charge(T0 + 25 * H, 102, card, "mastercard", Outcome.APPROVED),
    ]
    assert count_violations(log) == dict.fromkeys(KINDS, 0)
    assert count_violations(_series("mastercard", 10, H)) == dict.fromkeys(KINDS, 0)
    # A new card is a new credential: the old card's never-retry answer does not carry over.
    moved = [_initial(T0, code="stolen_card"), _charge(T0 + H, 1, credential="fp_b")]
    assert count_violations(moved) == dict.fromkeys(KINDS, 0)


# --- the check is what it claims: a reckless policy stays clean only thanks to the engine ----


def _reckless_policy(folder: Path) -> None:
    """Hourly retries for every retryable lane: far past the card networks' caps."""
    hammer = {
        "retries": [f"{h}h" for h in range(1, 13)],
        "max_attempts": 12,
        "align": "none",
        "end": {"after": "14d", "outcome": "churned"},
    }
    never = {"retries": [], "end": {"after": "14d", "outcome": "churned"}}
    lanes = {lane.value: hammer for lane in Lane}
    lanes.update({lane.value: never for lane in NEVER_RETRY_LANES})
    policy = {"name": "reckless", "description": "test only", "lanes": lanes}
    (folder / "reckless.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")


def test_guardrails_hold_a_reckless_policy_and_the_check_sees_them_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reckless_policy(tmp_path)
    monkeypatch.setenv("DUNWELL_POLICY_DIR", str(tmp_path))
    guarded = simulate(customers=20, days=12, seed=5, policies=["reckless"])
    assert guarded["policies"]["reckless"]["guardrail_violations"]["total"] == 0

    def allow(*_args: Any, **_kw: Any) -> Verdict:
        return Verdict(True, "guardrail.pass", "switched off by the test")

    monkeypatch.setattr(decide_module, "check_attempt", allow)
    monkeypatch.setattr(planning_module, "check_attempt", allow)
    unguarded = simulate(customers=20, days=12, seed=5, policies=["reckless"])
    found = unguarded["policies"]["reckless"]["guardrail_violations"]
    assert found["mastercard_24h_cap"] > 0, found
    assert found["charge_before_advice_delay"] > 0, found


def test_a_replacement_card_that_fails_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The new card is declined as expired too: the case goes back to the card lane."""

    def also_expired(p: Profile, state: CustomerState, *args: Any) -> ChargeResult:
        return decline("expired_card") if state.card > 1 else answer(p, state, *args)

    monkeypatch.setattr(world_module, "answer", also_expired)
    result = simulate(customers=10, days=20, seed=1, policies=["default"])
    assert result["policies"]["default"]["guardrail_violations"]["total"] == 0
