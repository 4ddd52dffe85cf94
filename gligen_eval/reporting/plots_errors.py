"""Report plots of the box error analysis (runs scored with ``scoring.error_analysis: true``).

* ``tide_errors`` -- ΔAP50 per TIDE error type (``box/tide/*`` in metrics.json), runs side by side;
* ``ap_over_iou`` -- box AP against the IoU threshold (``box/AP_over_iou`` in breakdowns.json), one
  line per run, with ``box/AP_iou_auc`` in the legend;
* ``confusion`` -- the confusion matrix (``box/confusion``) of the categories whose objects are
  least often seen as themselves, one panel per run, rows normalised to shares.

Each raises :class:`~gligen_eval.reporting.plots.Skip` naming what is missing.
"""

from __future__ import annotations

from typing import Any, Sequence

from gligen_eval.reporting.plots import Skip, _figure, _figure_legend, _finite, _grouped_bars, _colors
from gligen_eval.reporting.rundata import RunData
from gligen_eval.scoring.errors import TIDE_TYPES

_NO_ANALYSIS = "run with scoring.error_analysis: true"


def plot_tide_errors(runs: Sequence[RunData]):
    have = [r for r in runs if any(_finite(r.metric(f"box/tide/{t}")) for t in TIDE_TYPES)]
    if not have:
        raise Skip(f"no run has box/tide/* metrics ({_NO_ANALYSIS})")
    fig = _figure(2.0 + 1.1 * len(TIDE_TYPES) * max(1, len(have)) ** 0.5, 3.6)
    ax = fig.subplots()
    _grouped_bars(ax, list(TIDE_TYPES), {r.label: [r.metric(f"box/tide/{t}") for t in TIDE_TYPES] for r in have})
    _figure_legend(fig, ax, len(have))
    ax.set_ylabel("ΔAP50 if fixed (lower is better)")
    ax.set_title("Box errors by type (TIDE)")
    return fig


def _curve(r: RunData) -> tuple[list[float], list[float]] | None:
    raw = r.breakdowns.get("box/AP_over_iou")
    if not isinstance(raw, dict):
        return None
    pts = [(float(t), float(a)) for t, a in zip(raw.get("iou") or [], raw.get("AP") or []) if _finite(t) and _finite(a)]
    return ([p[0] for p in pts], [p[1] for p in pts]) if len(pts) >= 2 else None


def plot_ap_over_iou(runs: Sequence[RunData]):
    curves = {r: c for r in runs if (c := _curve(r)) is not None}
    if not curves:
        raise Skip(f"no run has box/AP_over_iou in breakdowns.json ({_NO_ANALYSIS})")
    fig = _figure(5.5, 3.8)
    ax = fig.subplots()
    for (r, (iou, ap)), color in zip(curves.items(), _colors(len(curves))):
        auc = r.metric("box/AP_iou_auc")
        ax.plot(iou, ap, marker="o", markersize=3, color=color,
                label=r.label + (f" (area {auc:.3f})" if _finite(auc) else ""))  # fmt: skip
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("box AP")
    ax.set_ylim(0, 1.05)
    ax.set_title("Box AP over the IoU threshold")
    ax.legend(fontsize="small")
    return fig


def worst_categories(cm: dict[str, Any], k: int) -> list[int]:
    """Indices into ``cm["labels"]`` of the ``k`` categories with objects whose share seen as
    themselves is lowest (ties: more objects first, then name)."""
    rows = cm["matrix"]
    scored = []
    for i, name in enumerate(cm["labels"]):
        n = sum(rows[i])
        if n:
            scored.append((rows[i][i] / n, -n, name, i))
    return [s[3] for s in sorted(scored)[:k]]


def plot_confusion(runs: Sequence[RunData], *, max_categories: int = 10):
    have = [(r, cm) for r in runs if isinstance(cm := r.breakdowns.get("box/confusion"), dict) and cm.get("labels")
            and worst_categories(cm, 1)]  # fmt: skip
    if not have:
        raise Skip(f"no run has box/confusion in breakdowns.json with objects ({_NO_ANALYSIS})")
    fig = _figure(1.0 + 4.8 * len(have), 1.6 + 0.42 * max_categories)
    axes = fig.subplots(1, len(have), squeeze=False)[0]
    for ax, (r, cm) in zip(axes, have):
        idx = worst_categories(cm, max_categories)
        n = len(cm["labels"])
        # columns: the worst categories, every other class they were seen as, and "missed"
        cols = list(idx) + sorted({j for i in idx for j in range(n) if cm["matrix"][i][j] and j not in idx}) + [n]
        data = []
        for i in idx:
            tot = sum(cm["matrix"][i]) or 1
            data.append([cm["matrix"][i][j] / tot for j in cols])
        im = ax.imshow(data, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_yticks(range(len(idx)), [cm["labels"][i] for i in idx], fontsize="small")
        ax.set_xticks(range(len(cols)), [cm["cols"][j] for j in cols], rotation=60, ha="right", fontsize="small")
        for y, row in enumerate(data):
            for x, v in enumerate(row):
                if v:
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize="x-small",
                            color="white" if v > 0.6 else "black")  # fmt: skip
        ax.set_xlabel("detected as")
        ax.set_ylabel("layout category")
        ax.set_title(f"{r.label}: worst {len(idx)} categories", fontsize="small")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="share of the category's objects")
    return fig
