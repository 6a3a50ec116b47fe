"""Benchmark aid (issue 5, "the proof"): the runs of each world pooled over their seeds.

Reads the per-world results `benchmarks/learning.py` writes (`<world>-seed<N>.json`, exactly
what `dunwell simulate --json` prints) from one or more folders, and judges each world on
the sums over its seeds, against the same targets as `learning.py`: revenue recovered by
`smart` over `baseline-fixed`'s, charges that reached the network over cases, `smart`'s
recovered amount over the oracle's recoverable amount, violations. Four runs of 3,000
customers pooled measure a world like one run of 12,000: what a larger merchant's month
would show. Beside the pooled share, the lowest and highest single run's, which is how far
one run of that size strays.

    .venv/bin/python benchmarks/pooled.py benchmarks/results/learning-v12-seeds44-47 [...]
        [--json FILE]

Prints a Markdown table; `--json` writes the same as JSON. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from learning import LIFT_TARGET, ORACLE_TARGET

ARMS = ("baseline-fixed", "smart")


def load(folders: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Per world (its name as the runs give it), every run found, in seed order."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for folder in folders:
        found = sorted(folder.glob("*-seed*.json"))
        if not found:
            raise SystemExit(f"{folder}: no <world>-seed<N>.json results in it")
        for path in found:
            result = json.loads(path.read_text())
            missing = [arm for arm in ARMS if arm not in result["policies"]]
            if missing or result.get("oracle") is None:
                raise SystemExit(f"{path}: needs the arms {', '.join(ARMS)} and an oracle")
            runs[result["parameters"]["world"]].append(result)
    for world_runs in runs.values():
        world_runs.sort(key=lambda r: r["parameters"]["seed"])
    return dict(runs)


def pool(world: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def total(arm: str, key: str) -> int:
        return sum(int(r["policies"][arm][key]) for r in runs)

    def recovered(arm: str) -> int:
        return sum(r["policies"][arm]["recovered_amount"]["amount_minor"] for r in runs)

    oracle = sum(r["oracle"]["recoverable_minor"] for r in runs)
    lift = (recovered("smart") - recovered("baseline-fixed")) / recovered("baseline-fixed")
    # As the report counts a case's charges: those that reached the network (a provider's
    # own error is not a charge), over the cases.
    attempts = {arm: round(total(arm, "network_attempts") / total(arm, "cases"), 4) for arm in ARMS}
    share = recovered("smart") / oracle
    singles = [r["policies"]["smart"]["share_of_oracle"]["by_amount"] for r in runs]
    violations = sum(
        r["policies"][arm]["guardrail_violations"]["total"] for r in runs for arm in ARMS
    )
    return {
        "world": world,
        "seeds": [r["parameters"]["seed"] for r in runs],
        "cases": total("smart", "cases"),
        "lift_vs_baseline": round(lift, 4),
        "attempts_per_case": attempts,
        "share_of_oracle_by_amount": round(share, 4),
        "single_run_share_range": [min(singles), max(singles)],
        "violations": violations,
        "met": {
            "lift": lift >= LIFT_TARGET,
            "attempts": attempts["smart"] <= attempts["baseline-fixed"],
            "oracle": share >= ORACLE_TARGET,
            "violations": violations == 0,
        },
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| world | seeds | cases | revenue vs baseline | charges per case smart / baseline "
        "| share of the oracle | single runs | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        a, (low, high) = r["attempts_per_case"], r["single_run_share_range"]
        missed = [k for k, ok in r["met"].items() if not ok]
        lines.append(
            f"| {r['world']} | {', '.join(map(str, r['seeds']))} | {r['cases']:,} "
            f"| {r['lift_vs_baseline']:+.1%} | {a['smart']:.3f} / {a['baseline-fixed']:.3f} "
            f"| {r['share_of_oracle_by_amount']:.1%} | {low:.1%} to {high:.1%} "
            f"| {'all' if not missed else 'missed: ' + ', '.join(missed)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the pooled results here")
    args = parser.parse_args()
    rows = [pool(world, runs) for world, runs in sorted(load(args.folders).items())]
    print(markdown(rows))
    if args.json:
        args.json.write_text(
            json.dumps({"folders": [str(f) for f in args.folders], "worlds": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
