"""The figures of docs/scoring.md "What the model learned": the calibration plot and the
feature importances of the model a simulation's training period produced, as SVG files.

    .venv/bin/python benchmarks/model_figures.py RESULT.json [--out docs/img] [--name NAME]

RESULT.json is what `dunwell simulate --json` printed (or a `benchmarks/learning.py` result);
its `training` holds the out-of-time validation. Writes NAME-calibration.svg and
NAME-importances.svg (NAME: the result file's stem). The same result gives the same bytes.
`dunwell scoring show --chart FILE` draws the same two figures for a model version on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dunwell.scoring.chart import calibration_svg, importances_svg

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("result", type=Path)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    training = json.loads(args.result.read_text()).get("training")
    if not training or not training.get("calibration"):
        sys.exit(f"{args.result}: no training period with a validation (run with --train-days)")
    name = args.name or args.result.stem
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "calibration": calibration_svg(training["calibration"]),
        "importances": importances_svg(training["feature_importances"]),
    }
    for kind, svg in figures.items():
        path = args.out / f"{name}-{kind}.svg"
        path.write_text(svg + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
