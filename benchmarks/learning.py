"""Benchmark (issue 5, "the proof"): smart vs baseline-fixed vs default on every built-in
realistic world, with a training period, judged against the Done-when targets.

For each world: `dunwell simulate` with a training period under baseline-fixed (other
customers, the days before the evaluation), then every arm on the same evaluation world.
Writes one JSON per world (exactly what `dunwell simulate --json` prints) and a summary with
the targets checked, into benchmarks/results/learning/, and prints a Markdown table for
docs/scoring.md. Nothing here is a test.

    .venv/bin/python benchmarks/learning.py [--customers 3000] [--train-customers 4000]
        [--days 45] [--train-days 60] [--seeds 1] [--worlds realistic,realistic-apac,...]
        [--out benchmarks/results/learning] [--arms baseline-fixed,default,smart]

The same command line gives the same numbers, byte for byte (seeded worlds, virtual time).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dunwell.logging_setup import configure_logging
from dunwell.sim.harness import simulate

HERE = Path(__file__).parent
OUT = HERE / "results" / "learning"
WORLDS = (
    "realistic",
    "realistic-monthly-pay",
    "realistic-weekly-pay",
    "realistic-hard-declines",
    "realistic-apac",
)
ARMS = ("baseline-fixed", "default", "smart")
LIFT_TARGET, ORACLE_TARGET = 0.15, 0.90


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--train-customers", type=int, default=4000)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--worlds", default=",".join(WORLDS))
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the JSON results")
    # The targets need only baseline-fixed and smart; leaving `default` out saves a third of
    # the evaluation time on large populations (each arm runs on its own, on the same draws).
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    arms = tuple(args.arms.split(","))
    missing = {"baseline-fixed", "smart"} - set(arms)
    if missing:
        parser.error(f"--arms must include {', '.join(sorted(missing))}: the targets compare them")
    rows: list[dict[str, Any]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for world in args.worlds.split(","):
            started = time.perf_counter()
            result = simulate(
                customers=args.customers,
                days=args.days,
                seed=seed,
                policies=arms,
                world=f"builtin:{world}",
                train_days=args.train_days,
                train_customers=args.train_customers,
            )
            seconds = time.perf_counter() - started
            suffix = "" if seed == 1 else f"-seed{seed}"
            (out / f"{world}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
            row = judge(world, seed, result)
            row["seconds"] = round(seconds, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": {"revenue_lift": LIFT_TARGET, "share_of_oracle_by_amount": ORACLE_TARGET},
        "worlds": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown(rows))


def judge(world: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
    arms = result["policies"]
    ran = [k for k in ARMS if k in arms]
    base, smart = arms["baseline-fixed"], arms["smart"]
    base_amount = base["recovered_amount"]["amount_minor"]
    lift = (smart["recovered_amount"]["amount_minor"] - base_amount) / base_amount
    share = smart["share_of_oracle"]["by_amount"] if smart["share_of_oracle"] else None
    return {
        "world": world,
        "seed": seed,
        "lift_vs_baseline": round(lift, 4),
        "attempts_per_case": {k: arms[k]["attempts_per_case"] for k in ran},
        "share_of_oracle_by_amount": share,
        "violations": {k: arms[k]["guardrail_violations"]["total"] for k in ran},
        "auc": result["training"]["auc"],
        "met": {
            "lift": lift >= LIFT_TARGET,
            "attempts": smart["attempts_per_case"] <= base["attempts_per_case"],
            "oracle": share is not None and share >= ORACLE_TARGET,
            "violations": all(arms[k]["guardrail_violations"]["total"] == 0 for k in ran),
        },
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| world | seed | smart vs baseline (revenue) | attempts/case smart / baseline "
        "| smart share of oracle (amount) | violations | model AUC |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        a = r["attempts_per_case"]
        share = r["share_of_oracle_by_amount"]
        lines.append(
            f"| {r['world']} | {r['seed']} | {r['lift_vs_baseline']:+.1%} | "
            f"{a['smart']:.2f} / {a['baseline-fixed']:.2f} | "
            f"{'-' if share is None else f'{share:.1%}'} | {sum(r['violations'].values())} | "
            f"{r['auc']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
