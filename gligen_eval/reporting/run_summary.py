"""The Markdown a run writes next to its results: ``report.md`` of one run, ``sweep.md`` of a sweep,
and the one-line summary the CLI prints."""

from __future__ import annotations

from typing import Any

from gligen_eval.reporting.metricinfo import headline_keys


def render_sweep(name: str, parameter: str, points: list[dict[str, Any]]) -> str:
    keys = [k for k in headline_keys() if any(p["metrics"] and k in p["metrics"] for p in points)]
    lines = [f"# Scheduled-sampling sweep: {name}", "", f"τ sets {parameter}.", "",
             "| τ | run | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]  # fmt: skip
    for p in points:
        m = p["metrics"] or {}
        vals = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else str(m.get(k, "")) for k in keys]
        lines.append(f"| {p['tau']:g} | {p['run']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def render_summary(manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    cfg = manifest["config"]
    lines = [f"# gligen-eval run: {manifest['name']}", ""]
    if manifest.get("random_weights"):
        lines += [
            "> **These numbers come from random weights** (tiny random generator and/or a detector built from a",
            "> `.yaml`). They exercise the pipeline and mean nothing about any model.",
            "",
        ]
    lines += [
        f"- model: `{cfg['model']['name']}` · detector: `{cfg['detector']['weights']}`",
        f"- layouts: `{manifest['layouts']['source']}` ({manifest['layouts']['count']} layouts, "
        f"{metrics.get('n_samples')} images, {metrics.get('n_instances')} grounded objects)",
        f"- sampler: {cfg['sampler']['steps']} steps, {cfg['sampler']['height']}x{cfg['sampler']['width']}, "
        f"guidance {cfg['sampler']['guidance_scale']}, schedule {cfg['sampler']['schedule']}",
        f"- created {manifest['created']} · git {str((manifest.get('git') or {}).get('hash'))[:10]}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for k, v in metrics.items():
        if isinstance(v, float):
            lines.append(f"| {k} | {v:.4f} |")
        else:
            lines.append(f"| {k} | {v} |")
    return "\n".join(lines) + "\n"


def format_metrics_short(metrics: dict[str, Any]) -> str:
    keys = headline_keys()
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), (int, float)))
