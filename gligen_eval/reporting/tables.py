"""The leaderboard: one row per run, every metric with its CI, provenance per row.

Written as Markdown, CSV, JSON and a self-contained sortable HTML page. The numbers are the
run's ``metrics.json`` values, unrounded in CSV/JSON and rounded for reading in Markdown/HTML.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from gligen_eval.errors import InputError
from gligen_eval.reporting import metricinfo as mi
from gligen_eval.reporting.html import esc, page
from gligen_eval.reporting.rundata import RunData
from gligen_eval.schema import COUNT_KEYS

# Descriptive columns (shown before the metrics: LEAD_COLUMNS, after them: TAIL_COLUMNS).
LEAD_COLUMNS = ("run", "model", "modality", "tau", "N")
TAIL_COLUMNS = ("sampler", "dataset", "layouts", "detector")
META_COLUMNS = LEAD_COLUMNS + TAIL_COLUMNS
PROVENANCE_COLUMNS = ("config_hash", "git", "generator_fp", "detector_fp", "created", "run_dir")


def leaderboard_metric_keys(runs: Sequence[RunData]) -> list[str]:
    keys: set[str] = set()
    for r in runs:
        keys.update(mi.metric_keys(r.metrics, skip=COUNT_KEYS))
    return mi.order_metrics(keys)


def leaderboard_rows(runs: Sequence[RunData], sort_by: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One dict per run (``metrics`` maps key -> {value, lo, hi}) in leaderboard order, and the metric keys."""
    keys = leaderboard_metric_keys(runs)
    rows = []
    for r in runs:
        metrics = {}
        for k in keys:
            v = r.metric(k)
            ci = r.ci(k)
            if v is not None and not math.isfinite(v):
                v = None
            metrics[k] = {"value": v, "lo": ci[0] if ci else None, "hi": ci[1] if ci else None}
        rows.append({
            "run": r.label, "model": r.model_name, "modality": r.modality, "sampler": r.sampler_text,
            "tau": r.tau, "dataset": r.dataset, "N": r.metric("n_samples"), "layouts": r.metric("n_layouts"),
            "detector": r.detector_name, "random_weights": r.random_weights,
            "config_hash": r.config_hash, "git": r.git, "generator_fp": r.generator_fingerprint,
            "detector_fp": r.detector_fingerprint, "created": r.manifest.get("created"), "run_dir": str(r.path),
            "metrics": metrics,
        })  # fmt: skip
    for row in rows:
        for c in ("N", "layouts"):
            if row[c] is not None and float(row[c]).is_integer():
                row[c] = int(row[c])
    return sort_rows(rows, keys, sort_by), keys


def sort_rows(rows: list[dict[str, Any]], keys: list[str], sort_by: str | None) -> list[dict[str, Any]]:
    """Sort by a metric (best first: descending, ascending for FID/KID) or a descriptive column."""
    if sort_by is None:
        sort_by = "box/AP" if "box/AP" in keys else None
        if sort_by is None:
            return list(rows)
    if sort_by in keys:
        desc = mi.higher_is_better(sort_by)
        have = [r for r in rows if _shown(sort_by, r["metrics"][sort_by])[0] is not None]
        missing = [r for r in rows if _shown(sort_by, r["metrics"][sort_by])[0] is None]
        have.sort(key=lambda r: r["metrics"][sort_by]["value"], reverse=desc)
        return have + missing
    if sort_by in META_COLUMNS or sort_by in PROVENANCE_COLUMNS:
        have = [r for r in rows if r.get(sort_by) is not None]
        missing = [r for r in rows if r.get(sort_by) is None]
        have.sort(key=lambda r: (str(type(r[sort_by])), r[sort_by]))
        return have + missing
    raise InputError(
        f"--sort-by {sort_by!r}: no such metric or column (metrics: {', '.join(keys) or 'none'}; "
        f"columns: {', '.join(META_COLUMNS + PROVENANCE_COLUMNS)})"
    )


def leaderboard_frame(rows: list[dict[str, Any]], keys: list[str]):
    """A pandas DataFrame with raw numbers: one column per metric plus ``<metric>/lo`` and ``/hi``."""
    import pandas as pd

    has_ci = {k for k in keys if any(r["metrics"][k]["lo"] is not None for r in rows)}
    records = []
    for r in rows:
        rec = {c: r[c] for c in META_COLUMNS}
        for k in keys:
            m = r["metrics"][k]
            rec[k] = m["value"]
            if k in has_ci:
                rec[f"{k}/lo"] = m["lo"]
                rec[f"{k}/hi"] = m["hi"]
        rec["random_weights"] = r["random_weights"]
        for c in PROVENANCE_COLUMNS:
            rec[c] = r[c]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _cell(r: dict[str, Any], col: str) -> str:
    v = r.get(col)
    if v is None:
        return ""
    if col == "tau":
        return f"{v:.3g}"
    if col in ("config_hash", "generator_fp", "detector_fp"):
        return str(v)[:12]
    return str(v)


def _shown(key: str, m: dict[str, Any]) -> tuple[float | None, tuple[float, float] | None]:
    """The value and CI to display; COCO's -1 ("undefined") and non-finite values show as empty."""
    v = m["value"]
    if v is None or not math.isfinite(v) or (mi.is_coco_key(key) and v == -1.0):
        return None, None
    ci = (m["lo"], m["hi"]) if m["lo"] is not None and m["hi"] is not None else None
    return v, ci


def display_metric_keys(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Metric columns with at least one defined value (CSV and JSON keep them all)."""
    return [k for k in keys if any(_shown(k, r["metrics"][k])[0] is not None for r in rows)]


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    keys = display_metric_keys(rows, keys)
    cols = list(LEAD_COLUMNS) + keys + list(TAIL_COLUMNS)
    lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = [_md_escape(_cell(r, c)) for c in LEAD_COLUMNS]
        cells += [mi.fmt(k, *_shown(k, r["metrics"][k])) for k in keys]
        cells += [_md_escape(_cell(r, c)) for c in TAIL_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    prov = ["", "Provenance:", "", "| run | config hash | git | generator | detector | created |", "|---|---|---|---|---|---|"]
    for r in rows:
        prov.append("| " + " | ".join(_md_escape(_cell(r, c)) for c in
                                      ("run", "config_hash", "git", "generator_fp", "detector_fp", "created")) + " |")
    notes = []
    if any(r["random_weights"] for r in rows):
        flagged = ", ".join(r["run"] for r in rows if r["random_weights"])
        notes = ["", f"Runs with random weights (their numbers mean nothing about a model): {_md_escape(flagged)}."]
    return "\n".join(lines + prov + notes) + "\n"


def to_json(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    return {"metrics": keys, "higher_is_better": {k: mi.higher_is_better(k) for k in keys}, "runs": rows}


def _meta_td(r: dict[str, Any], c: str) -> str:
    v = r.get(c)
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    attr = f' class="num" data-v="{esc(v)}"' if num else ""
    return f"<td{attr}>{esc(_cell(r, c))}</td>"


def to_html(rows: list[dict[str, Any]], keys: list[str], *, title: str = "gligen-eval leaderboard",
            sort_by: str | None = None) -> str:  # fmt: skip
    keys = display_metric_keys(rows, keys)
    head = "".join(f"<th>{esc(c)}</th>" for c in LEAD_COLUMNS)
    head += "".join(f"<th title=\"{'higher' if mi.higher_is_better(k) else 'lower'} is better\">{esc(k)}</th>"
                    for k in keys)  # fmt: skip
    head += "".join(f"<th>{esc(c)}</th>" for c in TAIL_COLUMNS + PROVENANCE_COLUMNS)
    body = []
    for r in rows:
        cells = [_meta_td(r, c) for c in LEAD_COLUMNS]
        for k in keys:
            v, ci = _shown(k, r["metrics"][k])
            dv = "" if v is None else repr(v)
            cells.append(f'<td class="num" data-v="{esc(dv)}">{esc(mi.fmt(k, v, ci))}</td>')
        cells += [_meta_td(r, c) for c in TAIL_COLUMNS]
        for c in PROVENANCE_COLUMNS:
            cells.append(f'<td title="{esc(r.get(c))}"><code>{esc(_cell(r, c))}</code></td>')
        body.append(f'<tr data-run="{esc(r["run"])}">' + "".join(cells) + "</tr>")
    flagged = [r["run"] for r in rows if r["random_weights"]]
    warn = ""
    if flagged:
        warn = (f'<p class="warn">Random weights in: {esc(", ".join(flagged))}. '
                "Their numbers exercise the pipeline and mean nothing about a model.</p>")  # fmt: skip
    order = f"sorted by {esc(sort_by)}" if sort_by else "in the order given"
    html = (
        f"<h1>{esc(title)}</h1>\n<p class=\"muted\">{len(rows)} run(s), {order}. Click a column header to sort. "
        "AP-style values are fractions in [0, 1]; brackets hold the confidence interval; empty cells are undefined "
        "or not measured.</p>\n"
        f"{warn}<div class=\"scroll\"><table class=\"sortable\" id=\"leaderboard\">\n<thead><tr>{head}</tr></thead>\n"
        "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>\n"
    )  # fmt: skip
    return page(title, html, css=LEADERBOARD_CSS)


LEADERBOARD_CSS = """
.scroll { overflow-x: auto; }
#leaderboard { font-size: .9em; }
#leaderboard td { white-space: nowrap; }
"""


def write_leaderboard(runs: Sequence[RunData], out: Path, sort_by: str | None = None) -> dict[str, Path]:
    """Write leaderboard.{md,csv,json,html} into ``out``; returns {kind: path}."""
    from gligen_eval.store import atomic_write_text

    rows, keys = leaderboard_rows(runs, sort_by)
    if sort_by is None and "box/AP" in keys:
        sort_by = "box/AP"
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "leaderboard.md": out / "leaderboard.md",
        "leaderboard.csv": out / "leaderboard.csv",
        "leaderboard.json": out / "leaderboard.json",
        "leaderboard.html": out / "leaderboard.html",
    }
    atomic_write_text(files["leaderboard.md"], to_markdown(rows, keys))
    atomic_write_text(files["leaderboard.csv"], leaderboard_frame(rows, keys).to_csv(index=False))
    atomic_write_text(files["leaderboard.json"], json.dumps(to_json(rows, keys), indent=2, allow_nan=False) + "\n")
    atomic_write_text(files["leaderboard.html"], to_html(rows, keys, sort_by=sort_by))
    return files
