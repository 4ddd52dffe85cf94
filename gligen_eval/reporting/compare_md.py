"""Markdown of a :class:`~gligen_eval.reporting.compare.CompareResult` (``compare.md``, PR comments)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gligen_eval.reporting import metricinfo as mi

if TYPE_CHECKING:
    from gligen_eval.reporting.compare import CompareResult, MetricRow


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _f(key: str, v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    d = mi.decimals(key) + (1 if not key.startswith(("fid", "kid")) else 0)
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def _metric_table(rows: list[MetricRow]) -> list[str]:
    mark = {"pass": "✅ pass", "regression": "❌ regression", "n/a": "n/a", "info": ""}
    lines = ["| metric | baseline | candidate | Δ | CI of Δ | gate | verdict |", "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        ci = f"[{_f(r.key, r.lo, True)}, {_f(r.key, r.hi, True)}] @{r.confidence:.0%}" if r.lo is not None else "–"
        verdict = mark[r.verdict] + (f" ({_md(r.note)})" if r.note else "")
        lines.append(f"| {_md(r.key)} | {_f(r.key, r.baseline)} | {_f(r.key, r.candidate)} | "
                     f"{_f(r.key, r.diff, True)} | {ci} | {_md(r.rule) or '–'} | {verdict} |")  # fmt: skip
    return lines


def render_markdown(res: CompareResult) -> str:
    head = {"pass": "✅ PASS", "regression": "❌ REGRESSION", "unusable": "⚠️ CANNOT COMPARE"}[res.verdict]
    lines = [f"### gligen-eval compare: {head}", "", _md(res.message), ""]
    if res.verdict == "unusable":
        return "\n".join(lines)
    b, c = res.baseline, res.candidate
    lines += [
        f"baseline `{_md(b['name'])}` (model `{_md(b['model'])}`, git `{b['git']}`) → candidate "
        f"`{_md(c['name'])}` (model `{_md(c['model'])}`, git `{c['git']}`)",
        "",
        f"Paired over {res.paired['layouts']} layouts / {res.paired['samples']} images (same layouts and seeds); "
        f"intervals: paired bootstrap over layouts, {res.bootstrap['n_boot']} draws "
        f"({res.bootstrap['n_boot_ap']} for COCO AP), seed {res.bootstrap['seed']}."
        + (f" Gate: `{_md(res.gate)}`." if res.gate else " No gate file: nothing is enforced."),
        "",
    ]  # fmt: skip
    gated = [r for r in res.rows if r.rule]
    others = [r for r in res.rows if not r.rule]
    if gated:
        lines += _metric_table(gated)
        if others:
            lines += ["", f"<details><summary>other metrics ({len(others)}, not gated)</summary>", ""]
            lines += _metric_table(others) + ["", "</details>"]
    else:
        lines += _metric_table(others)
    for n in res.notes:
        lines += ["", f"> {_md(n)}"]
    if res.config_diff:
        lines += ["", "<details><summary>config differences</summary>", "", "| key | baseline | candidate |", "|---|---|---|"]
        for k, (x, y) in res.config_diff.items():
            lines.append(f"| {_md(k)} | `{_md(json.dumps(x))}` | `{_md(json.dumps(y))}` |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
