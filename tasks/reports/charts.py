"""PNG charts (matplotlib, headless): revenue and commission by week, and the recruitment funnel.

Plotting needs floats; the figures drawn were computed exactly before (this module only draws them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers

import matplotlib.pyplot as plt  # after the backend is chosen

from partnerflow.tasks.reports.funnel import STAGES, FunnelRow
from partnerflow.tasks.shared.money import exponent

DPI = 80  # small files: they are embedded in the Markdown artifact


def weekly_money_chart(path: Path, weeks: Sequence[str], revenue_minor: Sequence[int],
                       commission_minor: Sequence[int], currency: str) -> Path:
    scale = 10 ** exponent(currency)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=DPI)
    try:
        xs = range(len(weeks))
        ax.bar([x - 0.2 for x in xs], [v / scale for v in revenue_minor], width=0.4, label="revenue")
        ax.bar([x + 0.2 for x in xs], [v / scale for v in commission_minor], width=0.4, label="commission")
        ax.set_xticks(list(xs), list(weeks), rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(currency)
        ax.set_title(f"Revenue and commission by week ({currency})")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def funnel_chart(path: Path, total: FunnelRow) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=DPI)
    try:
        labels = [s.replace("_", " ") for s in STAGES]
        ax.barh(labels[::-1], total.counts[::-1])
        for y, n in enumerate(total.counts[::-1]):
            ax.text(n, y, f" {n}", va="center", fontsize=8)
        ax.set_title("Recruitment funnel (all sources and sequences)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
