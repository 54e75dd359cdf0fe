"""The full weekly table as CSV and XLSX, and the funnel as CSV, in the configured folder.

Text that came from outside (partner names, prospect sources, sequence names) may start with a formula
character; a spreadsheet would run it. Such cells get a leading apostrophe (OWASP's advice for CSV
injection), in the CSV and in the workbook alike. Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook

from partnerflow.tasks.reports.figures import Figures, WeeklyFigures
from partnerflow.tasks.reports.funnel import STAGES, FunnelRow
from partnerflow.tasks.shared.money import exponent

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
Cell = str | int | Decimal | None

FIGURE_COLUMNS = ("clicks", "conversions", "conversion_rate", "sales", "revenue", "refunded", "net_revenue",
                  "refund_rate", "commission", "epc", "aov")


def neutralise(value: Cell) -> Cell:
    """A text cell a spreadsheet would read as a formula, made plain text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _major(amount_minor: int | None, currency: str) -> Decimal | None:
    return None if amount_minor is None else Decimal(amount_minor).scaleb(-exponent(currency))


def _figures(f: Figures, currency: str) -> list[Cell]:
    return [f.clicks, f.conversions, f.conversion_rate, f.sales, _major(f.revenue_minor, currency),
            _major(f.refunded_minor, currency), _major(f.net_revenue_minor, currency), f.refund_rate,
            _major(f.commission_minor, currency), _major(f.epc_minor, currency), _major(f.aov_minor, currency)]


def weekly_table(figures: WeeklyFigures) -> tuple[list[str], list[list[Cell]]]:
    """Every partner: the week's figures, then the week before's. Money in the reporting currency."""
    cur = figures.currency
    header = ["partner_id", "partner", "stage", "tier",
              *(f"{c}_{cur}" if c in ("revenue", "refunded", "net_revenue", "commission", "epc", "aov") else c
                for c in FIGURE_COLUMNS),
              *(f"previous_{c}" for c in FIGURE_COLUMNS)]
    rows = [[r.partner_id, r.name, r.stage, r.tier, *_figures(r.week, cur), *_figures(r.before, cur)]
            for r in figures.rows]
    return header, rows


def funnel_table(rows: Iterable[FunnelRow]) -> tuple[list[str], list[list[Cell]]]:
    header = ["source", "sequence", *STAGES, *(f"{s}_rate" for s in STAGES[1:]),
              *(f"{s}_median_hours" for s in STAGES[1:])]
    body = []
    for r in rows:
        hours = [None if s is None else (s / 3600).quantize(Decimal("0.1")) for s in r.median_seconds[1:]]
        body.append([r.source, r.sequence, *r.counts, *(r.rate(k) for k in range(1, len(STAGES))), *hours])
    return header, body


def _atomic(path: Path, write) -> Path:
    """Written beside the target and renamed over it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow([neutralise(h) for h in header])
            writer.writerows([["" if c is None else neutralise(c) for c in row] for row in rows])
    return _atomic(path, write)


def write_xlsx(path: Path, sheets: dict[str, tuple[Sequence[str], Iterable[Sequence[Cell]]]]) -> Path:
    def write(tmp: Path) -> None:
        book = Workbook(write_only=True)
        for title, (header, rows) in sheets.items():
            sheet = book.create_sheet(title[:31])
            sheet.append([neutralise(h) for h in header])
            for row in rows:
                sheet.append([neutralise(c) for c in row])
        book.save(tmp)
    return _atomic(path, write)
