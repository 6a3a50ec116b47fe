"""Policies as data: the shipped files load, and a broken file is explained path by path."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane
from dunwell.domain.policy import AccessLevel, Align, EndOutcome, PolicyError, parse_policy
from dunwell.policies import BUILTIN_DIR, load_policies, load_policy_file

pytestmark = pytest.mark.unit


_SHIPPED = {
    name: yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    for name in ("default", "baseline-fixed")
}


def shipped(name: str) -> dict[str, Any]:
    """A fresh copy of a shipped policy file's data, to break."""
    data = copy.deepcopy(_SHIPPED[name])
    assert isinstance(data, dict)
    return data


def problem_paths(error: PolicyError) -> list[str]:
    return [problem.split(": ", 1)[0] for problem in error.problems]


# --- the shipped policies ---------------------------------------------------------------------


def test_the_shipped_policies_load() -> None:
    policies = load_policies()
    assert set(policies) == {"default", "baseline-fixed", "smart"}
    for policy in policies.values():
        assert set(policy.lanes) == set(Lane)
        assert len(policy.digest) == 12


@pytest.mark.parametrize("name", ["default", "baseline-fixed", "smart"])
def test_a_shipped_policy_never_retries_the_never_retry_lanes(name: str) -> None:
    policy = load_policy_file(BUILTIN_DIR / f"{name}.yaml")
    assert policy.name == name
    for lane in NEVER_RETRY_LANES:
        assert policy.lane(lane).retries == ()


def test_the_default_policy_reads_as_written() -> None:
    policy = load_policy_file(BUILTIN_DIR / "default.yaml")
    soon = policy.lane(Lane.RETRY_SOON)
    assert soon.retries == (
        timedelta(hours=6),
        timedelta(days=1),
        timedelta(days=3),
        timedelta(days=6),
        timedelta(days=10),
    )
    assert soon.max_attempts == 5  # defaults to the number of offsets
    assert soon.align is Align.LOCAL_HOURS
    assert [c.when for c in soon.notices] == ["failure", "elapsed"]
    assert soon.notices[0].count == 3
    assert policy.lane(Lane.RETRY_AFTER_FUNDS).align is Align.PAYDAY
    assert policy.lane(Lane.FRAUD_SUSPECTED).end_outcome is EndOutcome.WRITTEN_OFF
    assert [s.level for s in policy.lane(Lane.UPDATE_PAYMENT_METHOD).access] == [
        AccessLevel.GRACE,
        AccessLevel.LIMITED,
        AccessLevel.SUSPENDED,
    ]
    assert policy.timing.local_hours == (8, 20)
    assert policy.timing.payday_window == timedelta(days=4)
    assert policy.escalation.segments == frozenset({"enterprise"})
    assert policy.escalation.min_amount_minor["USD"] == 500000


def test_the_baseline_policy_retries_every_retryable_lane_on_the_same_calendar() -> None:
    policy = load_policy_file(BUILTIN_DIR / "baseline-fixed.yaml")
    days = (timedelta(days=3), timedelta(days=7), timedelta(days=14))
    for lane in set(Lane) - NEVER_RETRY_LANES:
        assert policy.lane(lane).retries == days
        assert policy.lane(lane).align is Align.NONE
        assert [c.when for c in policy.lane(lane).notices] == ["every_failure"]


def test_the_digest_names_the_exact_content() -> None:
    data = shipped("default")
    same = parse_policy(copy.deepcopy(data))
    assert parse_policy(data).digest == same.digest
    data["lanes"]["retry_soon"]["retries"] = ["6h", "1d"]
    assert parse_policy(data).digest != same.digest


# --- a broken policy --------------------------------------------------------------------------

BROKEN = """\
name: broken
version: "2"
colour: blue                               # unknown top-level field
lanes:
  retry_soon:
    retries: [1d, 3x, 30d]                 # a bad duration, then a retry after the end
    end: {after: 21d}
  retry_after_funds:
    retries: [5d, 2d]                      # out of order
    shade: green                           # unknown field in a lane
    end: {after: 21d}
  retry_later:                             # not a lane
    end: {after: 21d}
  update_payment_method:
    access:
      - {after: 0m, level: banned}         # not an access level
    end: {after: 21d}
  authenticate:
    end: {after: 14d}
  do_not_retry:
    retries: [1d]                          # a never-retry lane with retries
    end: {after: 21d}
  fraud_suspected:
    end: {after: 7d}
  # provider_error is missing
"""


def test_a_policy_file_with_several_mistakes_names_every_one_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    error = caught.value
    assert sorted(problem_paths(error)) == sorted(
        [
            "colour",
            "lanes.retry_soon.retries[1]",  # '3x'
            "lanes.retry_soon.retries[2]",  # 30d >= 21d, reported at its own index
            "lanes.retry_after_funds.retries",  # out of order
            "lanes.retry_after_funds.shade",
            "lanes.retry_later",
            "lanes.update_payment_method.access[0].level",
            "lanes.do_not_retry.retries",
            "lanes.provider_error",
        ]
    )
    by_path = dict(p.split(": ", 1) for p in error.problems if "retries[" in p)
    assert "'3x' is not a duration" in by_path["lanes.retry_soon.retries[1]"]
    assert "falls at or after the end" in by_path["lanes.retry_soon.retries[2]"]
    message = str(error)
    assert message.startswith("invalid policy:")
    assert "lanes.provider_error: missing: every lane needs a row" in message
    assert "lanes.retry_later: unknown lane" in message
    assert "lanes.do_not_retry.retries: lane do_not_retry may never be retried" in message
    assert "lanes.retry_after_funds.retries: offsets must be in increasing order" in message


def test_a_policy_error_is_a_value_error_with_the_problem_list() -> None:
    with pytest.raises(ValueError) as caught:
        parse_policy({"name": "x", "lanes": {}})
    assert isinstance(caught.value, PolicyError)
    assert len(caught.value.problems) == len(Lane)


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d.update(name=""), "name"),
        (lambda d: d["timing"].update(local_hours=[20, 8]), "timing.local_hours"),
        (lambda d: d["timing"].update(payday_window="soon"), "timing.payday_window"),
        (
            lambda d: d["timing"].update(technical_retries=["5m", "x"]),
            "timing.technical_retries[1]",
        ),
        (
            lambda d: d["escalation"]["min_amount_minor"].update(USD=-1),
            "escalation.min_amount_minor.USD",
        ),
        (
            lambda d: d["lanes"]["retry_soon"].update(max_attempts=-1),
            "lanes.retry_soon.max_attempts",
        ),
        (
            lambda d: d["lanes"]["retry_soon"].update(max_attempts=True),
            "lanes.retry_soon.max_attempts",
        ),
        (lambda d: d["lanes"]["retry_soon"].update(align="moon"), "lanes.retry_soon.align"),
        (
            lambda d: d["lanes"]["retry_soon"]["end"].update(outcome="x"),
            "lanes.retry_soon.end.outcome",
        ),
        (lambda d: d["lanes"]["retry_soon"]["end"].pop("after"), "lanes.retry_soon.end.after"),
        (
            lambda d: d["lanes"]["retry_soon"]["notices"][0].update(when="sometimes"),
            "lanes.retry_soon.notices[0].when",
        ),
        (
            lambda d: d["lanes"]["retry_soon"]["notices"][0].pop("count"),
            "lanes.retry_soon.notices[0].count",
        ),
        (
            lambda d: d["lanes"]["retry_soon"]["notices"][1].update(after="later"),
            "lanes.retry_soon.notices[1].after",
        ),
        (
            lambda d: d["lanes"]["retry_soon"]["access"][0].update(level="full"),
            "lanes.retry_soon.access[0].level",
        ),
        (
            lambda d: d["lanes"]["retry_soon"].update(
                access=[{"after": "0m", "level": "limited"}, {"after": "1d", "level": "grace"}]
            ),
            "lanes.retry_soon.access",
        ),
        (lambda d: d["channels"]["fallback"].update(email="email"), "channels.fallback.email"),
        (lambda d: d["channels"]["fallback"].update(sms=3), "channels.fallback.sms"),
        (lambda d: d["channels"].update(retry="sms"), "channels.retry"),
    ],
)
def test_each_single_mistake_is_reported_at_its_path(edit: Any, path: str) -> None:
    data = shipped("default")
    edit(data)
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert problem_paths(caught.value) == [path], caught.value.problems


def test_lanes_that_are_not_a_mapping_are_reported_with_every_missing_lane() -> None:
    data = shipped("default")
    data["lanes"] = ["retry_soon"]
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert problem_paths(caught.value) == ["lanes"] + [f"lanes.{lane.value}" for lane in Lane]
    assert caught.value.problems[0] == "lanes: expected a mapping, got list"


def test_a_notice_keyed_on_instead_of_when_is_a_policy_error_not_a_crash() -> None:
    # YAML 1.1 reads the key `on` as the boolean true; mixed with another unknown key the
    # unknown-field report must still come out as a PolicyError.
    data = shipped("default")
    data["lanes"]["retry_soon"]["notices"] = yaml.safe_load(
        "[{on: failure, count: 3, template: payment_failed, colour: red}]"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    paths = problem_paths(caught.value)
    assert "lanes.retry_soon.notices[0].colour" in paths
    assert "lanes.retry_soon.notices[0].True" in paths
    assert "lanes.retry_soon.notices[0].when" in paths


# --- files that are not policies ---------------------------------------------------------------


def test_a_file_that_is_not_yaml_gives_a_clear_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("name: [unclosed\nlanes: {retry_soon: \n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: not valid YAML")


def test_a_yaml_file_that_is_not_a_mapping_gives_a_clear_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert "(policy): expected a mapping, got list" in caught.value.problems


def test_a_missing_file_gives_a_clear_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: cannot be read")


def test_a_binary_file_gives_a_clear_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "logo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    [problem] = caught.value.problems
    assert problem.startswith(str(path))


def test_an_extra_policy_dir_overrides_a_shipped_policy_of_the_same_name(tmp_path: Path) -> None:
    data = shipped("default")
    data["description"] = "ours"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    policies = load_policies(tmp_path)
    assert policies["default"].description == "ours"
    assert policies["baseline-fixed"].name == "baseline-fixed"


def test_the_shipped_rules_send_a_bounced_email_by_sms() -> None:
    assert parse_policy(shipped("default")).fallback == {"email": "sms"}
    data = shipped("default")
    del data["channels"]
    assert parse_policy(data).fallback == {}  # no block: a bounce stays a failed notice
