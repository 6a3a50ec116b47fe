"""Policy files: the shipped ones (default, baseline-fixed) and any in DUNWELL_POLICY_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dunwell.domain.policy import Policy, PolicyError, parse_policy

BUILTIN_DIR = Path(__file__).parent


def load_policy_file(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot be read ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: not valid YAML ({exc})"]) from exc
    return parse_policy(data)


def load_policies(extra_dir: Path | None = None) -> dict[str, Policy]:
    """Every policy by name; a file in `extra_dir` overrides a shipped one of the same name."""
    policies: dict[str, Policy] = {}
    dirs = [BUILTIN_DIR] + ([extra_dir] if extra_dir else [])
    for folder in dirs:
        for path in sorted(folder.glob("*.yaml")):
            policy = load_policy_file(path)
            policies[policy.name] = policy
    return policies
