"""Report plots (matplotlib, written as PNG and SVG).

Each plot is built from what the runs hold; when its data is absent it is skipped with a reason
(the report index lists the reasons). Figures are built with :class:`matplotlib.figure.Figure`,
so no global pyplot state or interactive backend is involved.

Plots:

* ``tradeoff`` -- scheduled sampling: box AP over τ, and AP against FID / CLIP, per sweep (runs
  whose configs differ only in the grounding schedule);
* ``per_category_ap`` -- box AP per category (``breakdowns.json``);
* ``by_size`` -- success and mIoU by object size (COCO small/medium/large, in pixels of the
  generated image), next to the run's APs/APm/APl;
* ``by_num_objects`` -- success, mIoU and box AP by number of objects per layout;
* ``lvis_rcf`` -- LVIS APr/APc/APf;
* ``kp_per_keypoint`` -- per keypoint type, the mean keypoint similarity of the best-matching
  detection (``breakdowns.json`` ``kp/AP_per_keypoint``);
* ``fid_clip`` -- FID against CLIP score across runs;
* ``tide_errors``, ``ap_over_iou``, ``confusion`` -- the box error analysis
  (:mod:`gligen_eval.reporting.plots_errors`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

from gligen_eval import schema
from gligen_eval.reporting.rundata import RunData

SIZE_LABELS = ("small", "medium", "large")


class Skip(Exception):
    """A plot whose data is absent; the message says what is missing."""


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, out: Path, name: str) -> list[Path]:
    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, format="png", metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": "gligen-eval"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return [png, svg]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _grouped_bars(ax, groups: Sequence[str], series: dict[str, list[float | None]], *, horizontal: bool = False):
    n = max(1, len(series))
    width = 0.8 / n
    for i, ((label, values), color) in enumerate(zip(series.items(), _colors(n))):
        pos = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        vals = [v if _finite(v) else 0.0 for v in values]
        if horizontal:
            ax.barh(pos, vals, height=width, label=label, color=color)
        else:
            ax.bar(pos, vals, width=width, label=label, color=color)
    if horizontal:
        ax.set_yticks(range(len(groups)), groups)
        ax.invert_yaxis()
    else:
        ax.set_xticks(range(len(groups)), groups)


def _figure_legend(fig, ax, n_series: int) -> None:
    """One legend for the whole figure, outside the axes, when there is more than one series."""
    if n_series > 1:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")


# --------------------------------------------------------------------------------------------
# scheduled-sampling trade-off


def sweep_groups(runs: Sequence[RunData]) -> list[list[RunData]]:
    """Runs whose resolved configs are equal but for the grounding schedule, with ≥2 values of τ."""
    from gligen_eval.records import stable_hash

    groups: dict[str, list[RunData]] = defaultdict(list)
    for r in runs:
        if r.tau is None:
            continue
        cfg = {k: v for k, v in r.config.items() if k not in ("name", "out")}
        sampler = {k: v for k, v in (cfg.get("sampler") or {}).items() if k not in ("schedule", "alpha", "beta")}
        cfg["sampler"] = sampler
        groups[stable_hash(cfg)].append(r)
    out = []
    for members in groups.values():
        if len({r.tau for r in members}) >= 2:
            out.append(sorted(members, key=lambda r: r.tau))
    return out


def plot_tradeoff(runs: Sequence[RunData]):
    sweeps = [g for g in sweep_groups(runs) if sum(_finite(r.metric("box/AP")) for r in g) >= 2]
    if not sweeps:
        raise Skip("needs a τ sweep: ≥2 runs with box/AP whose configs differ only in sampler schedule/alpha/beta")
    partners = [k for k in ("fid", "clip/global") if any(_finite(r.metric(k)) for g in sweeps for r in g)]
    fig = _figure(4.2 * (1 + len(partners)), 3.6)
    axes = fig.subplots(1, 1 + len(partners), squeeze=False)[0]
    for g, color in zip(sweeps, _colors(len(sweeps))):
        pts = [r for r in g if _finite(r.metric("box/AP"))]
        label = f"{g[0].model_name} ({g[0].dataset})" if len(sweeps) > 1 else g[0].model_name
        taus = [r.tau for r in pts]
        aps = [r.metric("box/AP") for r in pts]
        cis = [r.ci("box/AP") for r in pts]
        if all(c is not None for c in cis):
            err = [[a - c[0] for a, c in zip(aps, cis)], [c[1] - a for a, c in zip(aps, cis)]]
            axes[0].errorbar(taus, aps, yerr=err, marker="o", color=color, label=label, capsize=3)
        else:
            axes[0].plot(taus, aps, marker="o", color=color, label=label)
        for ax, key in zip(axes[1:], partners):
            both = [r for r in pts if _finite(r.metric(key))]
            ax.plot([r.metric(key) for r in both], [r.metric("box/AP") for r in both], marker="o", color=color,
                    label=label)  # fmt: skip
            for r in both:
                ax.annotate(f"τ={r.tau:g}", (r.metric(key), r.metric("box/AP")), textcoords="offset points",
                            xytext=(4, 4), fontsize="x-small")  # fmt: skip
    axes[0].set_xlabel("τ (fraction of steps with grounding)")
    axes[0].set_ylabel("box AP")
    axes[0].set_title("Grounding accuracy over τ")
    for ax, key in zip(axes[1:], partners):
        ax.set_xlabel(key + (" (lower is better)" if key == "fid" else ""))
        ax.set_ylabel("box AP")
        ax.set_title(f"box AP vs {key}")
    _figure_legend(fig, axes[0], len(sweeps))
    return fig


# --------------------------------------------------------------------------------------------
# per category / LVIS / keypoints


def _breakdown_values(r: RunData, key: str) -> dict[str, float]:
    raw = r.breakdowns.get(key)
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, v in raw.items():
        if isinstance(v, dict):
            v = v.get("AP")
        if _finite(v) and v >= 0:
            out[str(name)] = float(v)
    return out


def plot_per_category_ap(runs: Sequence[RunData], *, max_categories: int = 80):
    data = {r.label: _breakdown_values(r, schema.AP_PER_CATEGORY) for r in runs}
    data = {k: v for k, v in data.items() if v}
    if not data:
        raise Skip("no run has box/AP_per_category in breakdowns.json")
    first = next(iter(data.values()))
    cats = sorted({c for v in data.values() for c in v}, key=lambda c: (-first.get(c, -1.0), c))[:max_categories]
    fig = _figure(7.5, 1.2 + 0.22 * len(cats) * max(1, len(data)) ** 0.5)
    ax = fig.subplots()
    _grouped_bars(ax, cats, {label: [v.get(c) for c in cats] for label, v in data.items()}, horizontal=True)
    _figure_legend(fig, ax, len(data))
    ax.set_xlabel("box AP (IoU .50:.95)")
    ax.set_title("Box AP per category")
    ax.set_xlim(0, 1.05)
    return fig


def plot_lvis_rcf(runs: Sequence[RunData]):
    keys = ("box/APr", "box/APc", "box/APf")
    have = [r for r in runs if any(_finite(r.metric(k)) and r.metric(k) >= 0 for k in keys)]
    if not have:
        raise Skip("no run has LVIS box/APr, box/APc, box/APf")
    fig = _figure(1.8 + 1.3 * len(keys) * max(1, len(have)) ** 0.5, 3.4)
    ax = fig.subplots()
    _grouped_bars(ax, ["rare", "common", "frequent"],
                  {r.label: [r.metric(k) if (r.metric(k) or -1) >= 0 else None for k in keys] for r in have})  # fmt: skip
    _figure_legend(fig, ax, len(have))
    ax.set_ylabel("box AP")
    ax.set_title("LVIS AP by category frequency")
    return fig


def plot_kp_per_keypoint(runs: Sequence[RunData]):
    from gligen_eval.records import COCO_KEYPOINT_NAMES

    data = {}
    for r in runs:  # scoring writes {keypoint: {"similarity", "pck", "n"}} (keypoints.keypoint_breakdown)
        raw = r.breakdowns.get(schema.AP_PER_KEYPOINT)
        vals = {str(n): float(v["similarity"]) for n, v in raw.items()
                if isinstance(v, dict) and _finite(v.get("similarity"))} if isinstance(raw, dict) else {}  # fmt: skip
        if vals:
            data[r.label] = vals
    if not data:
        raise Skip("no run has kp/AP_per_keypoint in breakdowns.json")
    names = [n for n in COCO_KEYPOINT_NAMES if any(n in v for v in data.values())]
    names += sorted({n for v in data.values() for n in v} - set(names))
    fig = _figure(7.5, 1.2 + 0.24 * len(names) * max(1, len(data)) ** 0.5)
    ax = fig.subplots()
    _grouped_bars(ax, names, {label: [v.get(n) for n in names] for label, v in data.items()}, horizontal=True)
    _figure_legend(fig, ax, len(data))
    ax.set_xlabel("keypoint similarity (the per-point OKS term, mean over persons)")
    ax.set_title("Keypoint placement per keypoint type")
    ax.set_xlim(0, 1.05)
    return fig


# --------------------------------------------------------------------------------------------
# by object size and by number of objects


def size_bucket(box: Sequence[float], width: int, height: int, edges: tuple[float, float] = (32**2, 96**2)) -> str:
    """COCO size class of a normalized box rendered at ``width`` x ``height`` (areas in pixels²)."""
    area = (box[2] - box[0]) * width * (box[3] - box[1]) * height
    if area < edges[0]:
        return "small"
    return "medium" if area < edges[1] else "large"


def count_bin(n: int, bins: Sequence[int] = (1, 2, 3, 5, 9)) -> str:
    """Label of the bin holding ``n`` among lower edges ``bins`` ("1", "2", "3-4", "5-8", "9+")."""
    for lo, hi in zip(bins, list(bins[1:]) + [None]):
        if n >= lo and (hi is None or n < hi):
            if hi is None:
                return f"{lo}+"
            return str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}"
    return f"<{bins[0]}"


def instance_groups(r: RunData, group_of: Callable[[Any, Any, Any], str]) -> dict[str, dict[str, float]]:
    """{group: {"n", "success", "mIoU"}} of the run's instances, grouped by ``group_of(instance, sample, layout)``."""
    samples = {s.sample_key: s for s in r.samples}
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for inst in r.instances:
        s = samples.get(inst.sample_key)
        lay = r.layouts.get(inst.layout_id)
        if s is None or lay is None:
            continue
        g = group_of(inst, s, lay)
        a = acc[g]
        a[0] += 1
        a[1] += 1.0 if inst.hit else 0.0
        a[2] += float(inst.best_iou)
    return {g: {"n": a[0], "success": a[1] / a[0], "mIoU": a[2] / a[0]} for g, a in acc.items()}


def plot_by_size(runs: Sequence[RunData], *, edges: tuple[float, float] = (32**2, 96**2)):
    data = {}
    for r in runs:
        if not r.instances:
            continue
        data[r] = instance_groups(r, lambda i, s, lay: size_bucket(i.box, s.width, s.height, edges))
    if not data:
        raise Skip("no run has instances.jsonl records")
    ap_keys = ("box/APs", "box/APm", "box/APl")
    with_ap = {r: [r.metric(k) if (r.metric(k) is not None and r.metric(k) >= 0) else None for k in ap_keys]
               for r in data}  # fmt: skip
    show_ap = any(v is not None for vals in with_ap.values() for v in vals)
    fig = _figure(4.0 * (3 if show_ap else 2), 3.4)
    axes = fig.subplots(1, 3 if show_ap else 2, squeeze=False)[0]
    for ax, stat in zip(axes, ("success", "mIoU")):
        _grouped_bars(ax, list(SIZE_LABELS), {r.label: [g.get(b, {}).get(stat) for b in SIZE_LABELS]
                                              for r, g in data.items()})  # fmt: skip
        ax.set_title(f"{stat} by object size")
        ax.set_ylim(0, 1.05)
    if show_ap:
        _grouped_bars(axes[2], list(SIZE_LABELS), {r.label: vals for r, vals in with_ap.items()})
        axes[2].set_title("box AP by object size")
        axes[2].set_ylim(0, 1.05)
    _figure_legend(fig, axes[0], len(data))
    fig.suptitle(f"by object size (COCO areas < {edges[0]:g} px², < {edges[1]:g} px², larger)", fontsize="small")
    return fig


def ap_by_layout_group(r: RunData, group_of_layout: Callable[[Any], str]) -> dict[str, float]:
    """Box AP of the run's samples grouped by their layout (e.g. by number of objects)."""
    from gligen_eval.scoring import coco

    from gligen_eval.scoring.boxes import relabel_phrases

    dets = r.detections
    relabel = r.detector_takes_phrases  # phrase labels are scored as the objects' classes
    groups: dict[str, list] = defaultdict(list)
    for s in r.samples:
        lay = r.layouts.get(s.layout_id)
        if lay is None or s.sample_key not in dets:
            continue
        d = relabel_phrases(dets[s.sample_key], lay) if relabel else dets[s.sample_key]
        groups[group_of_layout(lay)].append((s.sample_key, lay, s.width, s.height, d))
    backend = r.cfg("scoring", "backend", "faster")
    out = {}
    for g, items in groups.items():
        gt, results = coco.build_eval_inputs(items)
        if not gt["annotations"]:
            continue
        out[g] = coco.evaluate_coco(gt, results, iou_type="bbox", backend=backend)["AP"]
    return out


def plot_by_num_objects(runs: Sequence[RunData], *, bins: Sequence[int] = (1, 2, 3, 5, 9)):
    data, aps = {}, {}
    for r in runs:
        if not r.instances:
            continue
        data[r] = instance_groups(r, lambda i, s, lay: count_bin(len(lay.objects), bins))
        if r.detections:
            aps[r] = ap_by_layout_group(r, lambda lay: count_bin(len(lay.objects), bins))
    if not data:
        raise Skip("no run has instances.jsonl records")
    labels = [count_bin(b, bins) for b in bins]
    labels = [b for b in labels if any(b in g for g in data.values())]
    panels = [("success", data), ("mIoU", data)] + ([("box AP", aps)] if any(aps.values()) else [])
    fig = _figure(4.0 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (stat, src) in zip(axes, panels):
        if stat == "box AP":
            series = {r.label: [src[r].get(b) for b in labels] for r in src}
        else:
            series = {r.label: [src[r].get(b, {}).get(stat) for b in labels] for r in src}
        _grouped_bars(ax, labels, series)
        ax.set_title(f"{stat} by objects per layout")
        ax.set_xlabel("objects in the layout")
        ax.set_ylim(0, 1.05)
    _figure_legend(fig, axes[0], len(data))
    return fig


# --------------------------------------------------------------------------------------------
# FID vs CLIP


def plot_fid_clip(runs: Sequence[RunData]):
    have = [r for r in runs if _finite(r.metric("fid")) and _finite(r.metric("clip/global"))]
    if not have:
        raise Skip("no run has both fid and clip/global")
    fig = _figure(5.0, 4.0)
    ax = fig.subplots()
    for r, color in zip(have, _colors(len(have))):
        ax.scatter([r.metric("fid")], [r.metric("clip/global")], color=color, label=r.label)
        ax.annotate(r.label, (r.metric("fid"), r.metric("clip/global")), textcoords="offset points", xytext=(4, 4),
                    fontsize="x-small")  # fmt: skip
    ax.set_xlabel("FID (lower is better)")
    ax.set_ylabel("CLIP score (global)")
    ax.set_title("Image quality vs text alignment")
    return fig


from gligen_eval.reporting import plots_errors  # noqa: E402  (it builds on the helpers above)

PLOTS: dict[str, Callable[[Sequence[RunData]], Any]] = {
    "tradeoff": plot_tradeoff,
    "per_category_ap": plot_per_category_ap,
    "by_size": plot_by_size,
    "by_num_objects": plot_by_num_objects,
    "lvis_rcf": plot_lvis_rcf,
    "kp_per_keypoint": plot_kp_per_keypoint,
    "fid_clip": plot_fid_clip,
    "tide_errors": plots_errors.plot_tide_errors,
    "ap_over_iou": plots_errors.plot_ap_over_iou,
    "confusion": plots_errors.plot_confusion,
}


def write_plots(runs: Sequence[RunData], out: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Write every plot whose data is present into ``out``; returns ({plot: [png, svg]}, {plot: skip reason})."""
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for name, build in PLOTS.items():
        try:
            fig = build(runs)
        except Skip as e:
            skipped[name] = str(e)
            continue
        written[name] = _save(fig, out, name)
    return written, skipped
