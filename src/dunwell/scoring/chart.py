"""What a model learned, as pictures: its calibration and its feature importances.

Inline SVG, no plotting library, the same manifest gives the same bytes (like `sim/chart`).
`dunwell scoring show --chart FILE` writes `model_page`; `dunwell simulate --chart` appends
both figures for the model its training period produced.
"""

from __future__ import annotations

from html import escape
from typing import Any

SIZE, PAD = 360, 48
BAR_WIDTH, BAR_HEIGHT, LABEL = 520, 18, 210


def calibration_svg(bins: list[dict[str, Any]]) -> str:
    """Mean predicted vs observed success per probability bin, dot area by rows; the
    diagonal is perfect calibration."""
    span = SIZE - 2 * PAD

    def at(p: float) -> float:
        return PAD + span * p

    def up(p: float) -> float:
        return SIZE - PAD - span * p

    most = max((b["rows"] for b in bins), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        'font-family="sans-serif" font-size="12">',
        f'<line x1="{at(0)}" y1="{up(0)}" x2="{at(1)}" y2="{up(0)}" stroke="#333"/>',
        f'<line x1="{at(0)}" y1="{up(0)}" x2="{at(0)}" y2="{up(1)}" stroke="#333"/>',
        f'<line x1="{at(0)}" y1="{up(0)}" x2="{at(1)}" y2="{up(1)}" stroke="#999" '
        'stroke-dasharray="4 4"/>',
    ]
    for tick in range(0, 11, 2):
        p = tick / 10
        parts.append(f'<text x="{at(p):.1f}" y="{up(0) + 16}" text-anchor="middle">{p:.1f}</text>')
        parts.append(f'<text x="{at(0) - 6}" y="{up(p) + 4:.1f}" text-anchor="end">{p:.1f}</text>')
    parts.append(
        f'<text x="{SIZE / 2}" y="{SIZE - 8}" text-anchor="middle">mean predicted p</text>'
    )
    parts.append(
        f'<text x="14" y="{SIZE / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {SIZE / 2})">observed success rate</text>'
    )
    for b in bins:
        radius = 3 + 9 * (b["rows"] / most) ** 0.5
        parts.append(
            f'<circle cx="{at(b["predicted"]):.1f}" cy="{up(b["observed"]):.1f}" '
            f'r="{radius:.1f}" fill="#1f77b4" fill-opacity="0.7">'
            f"<title>{b['from']:.1f}-{b['to']:.1f}: {b['rows']} attempts, predicted "
            f"{b['predicted']:.3f}, observed {b['observed']:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def importances_svg(importances: dict[str, float]) -> str:
    """Permutation importances (drop in validation AUC), largest first; negative ones (the
    feature is noise on this history) drawn to the left in grey."""
    items = list(importances.items())
    height = PAD + BAR_HEIGHT * len(items) + 8
    extent = max((abs(v) for _, v in items), default=0.0) or 1.0
    zero = LABEL + (BAR_WIDTH - LABEL) * 0.25
    scale = (BAR_WIDTH - zero - 60) / extent
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{BAR_WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{LABEL}" y="16">drop in validation AUC when the feature is shuffled</text>',
        f'<line x1="{zero:.1f}" y1="{PAD - 20}" x2="{zero:.1f}" y2="{height - 4}" stroke="#333"/>',
    ]
    for index, (name, value) in enumerate(items):
        top = PAD - 16 + BAR_HEIGHT * index
        width = abs(value) * scale
        left = zero if value >= 0 else zero - width
        colour = "#2ca02c" if value > 0 else "#999"
        parts.append(
            f'<text x="{LABEL - 8}" y="{top + 12}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{left:.1f}" y="{top}" width="{width:.1f}" height="{BAR_HEIGHT - 4}" '
            f'fill="{colour}"/>'
            f'<text x="{max(zero, left + width) + 4:.1f}" y="{top + 12}">{value:+.4f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def model_section(validation: dict[str, Any], heading: str) -> str:
    auc = validation.get("auc")
    held = f" on {validation['rows']} attempts" if "rows" in validation else ""
    summary = (
        f"out-of-time validation{held}: AUC "
        f"{'-' if auc is None else f'{auc:.3f}'}, Brier {validation['brier']:.4f} "
        f"(base rate {validation['base_rate']:.3f})"
    )
    return (
        f'<h2 style="font: 15px sans-serif">{escape(heading)}</h2>\n'
        f'<p style="font: 13px sans-serif">{escape(summary)}</p>\n'
        f'<div style="display: flex; gap: 24px; align-items: flex-start">'
        f"{calibration_svg(validation.get('calibration') or [])}"
        f"{importances_svg(validation.get('feature_importances') or {})}</div>"
    )


def model_page(manifest: dict[str, Any]) -> str:
    title = (
        f"Retry model {manifest['version']}: {manifest['rows']} attempts of "
        f"{manifest['cases']} cases, {manifest['history_from'][:10]} to "
        f"{manifest['history_to'][:10]}"
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n<body>\n"
        f'<h1 style="font: 16px sans-serif">{escape(title)}</h1>\n'
        + model_section(manifest["validation"], "What the model learned")
        + "\n</body></html>\n"
    )
