"""Recovery over time per arm: one self-contained HTML page with an inline SVG line chart.

No plotting library: the page is a few kilobytes, opens anywhere, and the same result gives
the same bytes.
"""

from __future__ import annotations

from html import escape
from typing import Any

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
WIDTH, HEIGHT, PAD = 720, 360, 56


def to_html(result: dict[str, Any]) -> str:
    p = result["parameters"]
    arms = result["policies"]
    failed = max((m["failed_amount"]["amount_minor"] for m in arms.values()), default=0) or 1
    days = max((len(m.get("recovered_by_day", [])) for m in arms.values()), default=0)
    oracle = result.get("oracle")
    top = max(
        [oracle["share_by_amount"] if oracle else 0.0]
        + [max(m.get("recovered_by_day") or [0]) / failed for m in arms.values()]
    )
    top = min(1.0, max(0.1, round(top + 0.05, 1)))

    def x(day: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (day / max(days, 1))

    def y(share: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (share / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
    ]
    for tick in range(0, 11):
        share = top * tick / 10
        parts.append(
            f'<text x="{PAD - 6}" y="{y(share) + 4:.1f}" text-anchor="end">{share:.0%}</text>'
        )
    step = max(1, days // 10)
    for day in range(0, days + 1, step):
        parts.append(
            f'<text x="{x(day):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{day}</text>'
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        "virtual days since the start</text>"
    )
    if oracle:
        share = oracle["share_by_amount"]
        parts.append(
            f'<line x1="{PAD}" y1="{y(share):.1f}" x2="{WIDTH - PAD}" y2="{y(share):.1f}" '
            'stroke="#999" stroke-dasharray="4 4"/>'
            f'<text x="{WIDTH - PAD}" y="{y(share) - 4:.1f}" text-anchor="end" fill="#666">'
            f"oracle {share:.1%}</text>"
        )
    for index, (name, m) in enumerate(arms.items()):
        colour = COLOURS[index % len(COLOURS)]
        curve = m.get("recovered_by_day") or []
        points = " ".join(f"{x(day + 1):.1f},{y(v / failed):.1f}" for day, v in enumerate(curve))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{x(0):.1f},{y(0):.1f} {points}"/>'
        )
        parts.append(
            f'<text x="{PAD + 10}" y="{PAD + 16 * index}" fill="{colour}">{escape(name)}: '
            f"{m['recovery_rate']['by_amount']:.1%} of the amount</text>"
        )
    parts.append("</svg>")
    title = (
        f"Recovered share of the failed amount over time, per arm: world {p.get('world')}, "
        f"{p['customers']} customers, {p['days']} days, seed {p['seed']}"
    )
    training = result.get("training")
    learned = ""
    if training:  # the model the training period produced: what it learned, how calibrated
        from dunwell.scoring.chart import model_section

        validation = {k: v for k, v in training.items() if k != "rows"}
        learned = "\n" + model_section(
            validation,
            f"The retry model trained on {training['rows']} attempts of the training period "
            f"({training['policy']}, {training['customers']} other customers, "
            f"{training['days']} days)",
        )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title></head>\n<body>\n<h1 style="font: 16px sans-serif">'
        f"{escape(title)}</h1>\n" + "\n".join(parts) + learned + "\n</body></html>\n"
    )
