"""Reports over finished runs: leaderboard, plots, gallery, and the run-vs-run regression gate.

``build_report(run_dirs, out)`` writes into ``out``::

    index.md, index.html          what was written, and which plots were skipped and why
    leaderboard.{md,csv,json,html}
    plots/<name>.{png,svg}        see gligen_eval.reporting.plots
    gallery/<run>.html            one page per run

``compare_runs(baseline, candidate, gate)`` is the paired comparison behind
``gligen-eval compare`` (see gligen_eval.reporting.compare).

pandas and matplotlib are imported only when a report is built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from gligen_eval.reporting.compare import CompareResult

__all__ = ["build_report", "compare_runs"]


def _slug(label: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "run"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}_{n}", n + 1
    taken.add(slug)
    return slug


def build_report(run_dirs: list[Path], out: Path, sort_by: str | None = None, *, gallery_samples: int = 200,
                 embed_images: bool = True) -> dict[str, Path]:  # fmt: skip
    """Write the leaderboard, plots, galleries and an index for ``run_dirs`` into ``out``.

    Returns ``{name: path}`` of every file written (``index.html``, ``leaderboard.csv``,
    ``plots/tradeoff.png``, ``gallery/<run>.html``, ...). Plots whose data is absent are skipped
    and listed with the reason in the index.
    """
    from gligen_eval.reporting.gallery import write_gallery
    from gligen_eval.reporting.plots import write_plots
    from gligen_eval.reporting.rundata import load_runs
    from gligen_eval.reporting.tables import write_leaderboard

    runs = load_runs([Path(p) for p in run_dirs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files.update(write_leaderboard(runs, out, sort_by=sort_by))
    plots, skipped = write_plots(runs, out / "plots")
    for paths in plots.values():
        for p in paths:
            files[f"plots/{p.name}"] = p
    taken: set[str] = set()
    galleries = {}
    for r in runs:
        p = write_gallery(r, out / "gallery" / f"{_slug(r.label, taken)}.html", max_samples=gallery_samples,
                          embed=embed_images)  # fmt: skip
        galleries[r.label] = p
        files[f"gallery/{p.name}"] = p
    index_md, index_html = _write_index(out, runs, files, plots, skipped, galleries)
    return {"index.html": index_html, "index.md": index_md, **files}


def _write_index(out: Path, runs, files: dict[str, Path], plots: dict[str, list[Path]], skipped: dict[str, str],
                 galleries: dict[str, Path]) -> tuple[Path, Path]:  # fmt: skip
    from gligen_eval.reporting.html import esc, page
    from gligen_eval.store import atomic_write_text

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    md = ["# gligen-eval report", "", f"{len(runs)} run(s): " + ", ".join(f"`{r.label}`" for r in runs), "",
          "## Leaderboard", "", "[Markdown](leaderboard.md) · [CSV](leaderboard.csv) · [JSON](leaderboard.json) · "
          "[HTML](leaderboard.html)", "", "## Plots", ""]  # fmt: skip
    for name, paths in plots.items():
        md.append(f"- {name}: " + " · ".join(f"[{p.suffix[1:].upper()}]({rel(p)})" for p in paths))
    if not plots:
        md.append("- none")
    if skipped:
        md += ["", "Skipped plots:", ""] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    md += ["", "## Galleries", ""] + [f"- [{label}]({rel(p)})" for label, p in galleries.items()]
    if any(r.random_weights for r in runs):
        md += ["", "> Some runs used random weights; their numbers exercise the pipeline and mean nothing about a model."]

    html = [f"<h1>gligen-eval report</h1><p class=\"muted\">{len(runs)} run(s): "
            + ", ".join(f"<code>{esc(r.label)}</code>" for r in runs) + "</p>",
            '<h2>Leaderboard</h2><p><a href="leaderboard.html">HTML</a> · <a href="leaderboard.md">Markdown</a> · '
            '<a href="leaderboard.csv">CSV</a> · <a href="leaderboard.json">JSON</a></p>', "<h2>Plots</h2>"]  # fmt: skip
    for name, paths in plots.items():
        png = next((p for p in paths if p.suffix == ".png"), paths[0])
        svg = next((p for p in paths if p.suffix == ".svg"), None)
        html.append(f'<figure><img src="{esc(rel(png))}" alt="{esc(name)}" style="max-width:100%">'
                    f'<figcaption>{esc(name)}' + (f' · <a href="{esc(rel(svg))}">SVG</a>' if svg else "")
                    + "</figcaption></figure>")  # fmt: skip
    if not plots:
        html.append('<p class="muted">No plot had its data.</p>')
    if skipped:
        html.append("<h3>Skipped plots</h3><ul id=\"skipped\">" + "".join(
            f"<li><b>{esc(n)}</b>: {esc(reason)}</li>" for n, reason in skipped.items()) + "</ul>")  # fmt: skip
    html.append("<h2>Galleries</h2><ul>" + "".join(f'<li><a href="{esc(rel(p))}">{esc(label)}</a></li>'
                                                   for label, p in galleries.items()) + "</ul>")  # fmt: skip
    md_path, html_path = out / "index.md", out / "index.html"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    atomic_write_text(html_path, page("gligen-eval report", "\n".join(html)))
    return md_path, html_path


def compare_runs(baseline: Path, candidate: Path, gate: Path | None = None, allow_mismatch: bool = False,
                 **kwargs: Any) -> "CompareResult":  # fmt: skip
    """Paired comparison of two runs over the same layouts and seeds (see :mod:`.compare`)."""
    from gligen_eval.reporting.compare import compare_runs as _compare

    return _compare(baseline, candidate, gate, allow_mismatch=allow_mismatch, **kwargs)
