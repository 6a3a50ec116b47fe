"""Benchmark aid (issue 5): where each policy's recovered amount falls short of the oracle
bound, by the realistic world's hidden cause of each failure.

It reads the world's hidden truth (each customer's cause, and whether some charge in the
oracle's window would have recovered them), so it is for people developing policies, never
for the engine: the harness keeps that truth from the engine, and so does this script (the
policies run exactly as in `dunwell simulate`, with a training period on `baseline-fixed`).

    .venv/bin/python benchmarks/oracle_gap.py [--world realistic] [--seed 12]
        [--policies baseline-fixed,smart] [--customers 3000] [--days 45]
        [--train-customers 4000] [--train-days 60] [--charges 15]
        [--out benchmarks/results/oracle-gap]

Per policy and cause: cases, how many the oracle counts recoverable, how many were
recovered, the recoverable amount not recovered as a share of the oracle's whole amount
(the rows add up to 1 - the policy's share of the oracle by amount), and the charges
dunwell made per case. A second table splits the same missed amount by what the customer
did with the messages: cancelled after one (a complaint), never got them (the email bounced
and the policy had no other channel), or ignored, read or acted on them. Issuer declines
are split in two: `issuer/hopeless` are the customers whose issuer approves one charge in
fifty (`HOPELESS_APPROVAL`); the oracle counts nearly all of them recoverable, since each
of the window's hours is a fresh draw.

Beside the oracle, what is within reach (`RealisticWorld.within_reach`): the amount the best
policy that knew each customer's hidden parameters, but not the dice, could expect to
recover with at most `--charges` charges per card (Visa's 15 reattempts in 30 days). A
policy's share of it says how much of what a policy can expect it gets; the oracle's share
also counts the lucky hours no policy can aim at. The same command line gives the same
numbers. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from dunwell.logging_setup import configure_logging
from dunwell.sim import harness
from dunwell.sim.loading import builtin_worlds
from dunwell.sim.population import DEFAULT_START
from dunwell.sim.worlds.customers import HOPELESS_APPROVAL
from dunwell.sim.worlds.realistic import RealisticWorld

OUT = Path(__file__).parent / "results" / "oracle-gap"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="realistic", help="a built-in realistic world")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--policies", default="baseline-fixed,smart")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--train-customers", type=int, default=4000)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--charges", type=int, default=15, help="per card, for within reach")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)
    factory = builtin_worlds()[args.world]
    scorer, _ = harness.train_period(
        factory, args.train_customers, args.train_days, args.seed, DEFAULT_START, "baseline-fixed"
    )

    def fresh() -> Any:
        size = {"customers": args.customers, "days": args.days}
        return factory(seed=args.seed, start=DEFAULT_START, **size)

    result: dict[str, Any] = {
        "world": args.world,
        "seed": args.seed,
        "charges_per_card_within_reach": args.charges,
        "policies": {},
    }
    reach: dict[str, float] = {}
    for policy in args.policies.split(","):
        kept: list[object] = []
        harness.run_policy(fresh, policy, scorer, history=False, keep=kept)
        world, _, cases = kept[-3:]
        if not isinstance(world, RealisticWorld):
            raise SystemExit(f"--world {args.world}: only the realistic worlds show their causes")
        if not reach:  # the same customers for every policy: once
            reach = {cid: world.within_reach(cid, args.charges) for cid in world.customers}
        result["policies"][policy] = _by_cause(world, cases, reach)  # type: ignore[arg-type]
        reactions = _by_reaction(world, cases)  # type: ignore[arg-type]
        result["policies"][policy]["by_reaction"] = reactions
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.world}-seed{args.seed}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    _print(result)
    print(f"\n{path}")


def _by_cause(world: RealisticWorld, cases: list[Any], reach: dict[str, float]) -> dict[str, Any]:
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    oracle_minor = 0
    for case in cases:
        customer = world.customers[case.customer.id]
        cause = customer.cause.value
        if cause == "issuer" and customer.approval == HOPELESS_APPROVAL:
            cause = "issuer/hopeless"
        row = rows[cause]
        row["cases"] += 1
        row["charges"] += len(case.attempts)
        recovered = case.status.value == "recovered"
        row["recovered"] += recovered
        row["recovered_minor"] += customer.amount_minor if recovered else 0
        row["reach_minor"] += customer.amount_minor * reach[case.customer.id]
        if world.recoverable(case.customer.id):
            row["recoverable"] += 1
            row["recoverable_minor"] += customer.amount_minor
            oracle_minor += customer.amount_minor
            if not recovered:
                row["missed_minor"] += customer.amount_minor
    causes = {
        cause: {
            "cases": int(row["cases"]),
            "recoverable": int(row["recoverable"]),
            "recovered": int(row["recovered"]),
            "missed_recoverable_minor": int(row["missed_minor"]),
            "missed_share_of_oracle_amount": round(row["missed_minor"] / oracle_minor, 4),
            "charges_per_case": round(row["charges"] / row["cases"], 2),
            "recovered_minor": int(row["recovered_minor"]),
            "within_reach_minor": round(row["reach_minor"]),
            "oracle_minor": int(row["recoverable_minor"]),
        }
        for cause, row in sorted(rows.items())
    }
    missed = sum(row["missed_minor"] for row in rows.values())
    recovered = sum(row["recovered_minor"] for row in rows.values())
    within = sum(row["reach_minor"] for row in rows.values())
    return {
        "causes": causes,
        "missed_share_of_oracle_amount": round(missed / oracle_minor, 4),
        "within_reach_share_of_oracle_amount": round(within / oracle_minor, 4),
        "share_of_within_reach": round(recovered / within, 4),
    }


def _by_reaction(world: RealisticWorld, cases: list[Any]) -> dict[str, float]:
    """The missed share of the oracle's amount by what the customer did with the messages."""
    missed: dict[str, int] = defaultdict(int)
    oracle_minor = 0
    for case in cases:
        cid = case.customer.id
        if not world.recoverable(cid):
            continue
        customer = world.customers[cid]
        oracle_minor += customer.amount_minor
        if case.status.value == "recovered":
            continue
        if world.complained(cid):
            reaction = "cancelled after a message"
        elif customer.bad_email and not any(n.status == "sent" for n in case.notices):
            reaction = "never reached (email bounced)"
        else:
            reaction = customer.engagement.value
        missed[reaction] += customer.amount_minor
    return {k: round(v / oracle_minor, 4) for k, v in sorted(missed.items())}


def _print(result: dict[str, Any]) -> None:
    for policy, found in result["policies"].items():
        print(f"\n{policy} on {result['world']} seed {result['seed']}")
        print(
            "| cause | cases | recoverable | recovered | missed, of the oracle | charges/case "
            "| within reach, of the oracle | recovered, of within reach |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for cause, row in found["causes"].items():
            oracle, reach = row["oracle_minor"], row["within_reach_minor"]
            print(
                f"| {cause} | {row['cases']} | {row['recoverable']} | {row['recovered']} | "
                f"{row['missed_share_of_oracle_amount']:.1%} | {row['charges_per_case']:.2f} | "
                f"{reach / oracle if oracle else 0:.1%} | "
                f"{row['recovered_minor'] / reach if reach else 0:.1%} |"
            )
        print(f"missed in all: {found['missed_share_of_oracle_amount']:.1%} of the oracle amount")
        print(
            f"within reach ({result['charges_per_card_within_reach']} charges per card): "
            f"{found['within_reach_share_of_oracle_amount']:.1%} of the oracle amount; "
            f"recovered {found['share_of_within_reach']:.1%} of it"
        )
        reactions = ", ".join(f"{k} {v:.1%}" for k, v in found["by_reaction"].items())
        print(f"missed by what the customer did with the messages: {reactions}")


if __name__ == "__main__":
    main()
