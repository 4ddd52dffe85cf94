"""The gallery: generated images with their layouts drawn over them, worst first.

One self-contained HTML page per run. Each card shows a generated image (embedded as a
thumbnail, or linked relatively) with an SVG overlay: layout boxes colored by hit (green) or miss
(red) with a number, the matched detection of each object dashed, keypoints and skeleton of
keypoint layouts, and the detector's boxes on demand. Beside it: the caption, every grounded
object with its IoU, error type and ``reason``, and the top detections. Cards are ordered worst
first (share of objects hit, then mean IoU) and can be filtered by category, by failure kind and by
error type (``hit``, ``loc``, ``cls``, ``both``, ``missed``; see :mod:`gligen_eval.scoring.instances`). Every piece
of layout or detector text is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from gligen_eval.records import Detection, InstanceRecord, Layout, SampleRecord
from gligen_eval.reporting.html import esc, page
from gligen_eval.reporting.rundata import RunData
from gligen_eval.imageio import pil_open
from gligen_eval.scoring.instances import ERROR_TYPES

FAILURE_KINDS = ("hit", "low IoU", "not detected")
HIT_COLOR, MISS_COLOR = "#1a7f37", "#cf222e"

GALLERY_CSS = """
.controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid var(--line);
            z-index: 2; display: flex; gap: 1em; flex-wrap: wrap; align-items: center; }
.card { display: flex; gap: 1em; border: 1px solid var(--line); border-radius: 6px; padding: .7em; margin: .7em 0; }
.card.hidden { display: none; }
.imgbox { position: relative; flex: none; width: 256px; align-self: flex-start; }  /* not stretched to the card */
.imgbox img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
.imgbox svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.imgbox .missing { width: 100%; aspect-ratio: 1; background: #eee; display: flex; align-items: center;
                   justify-content: center; color: var(--muted); }
.side { flex: 1; min-width: 0; overflow-wrap: anywhere; }  /* long unbroken words wrap */
.maps { flex: none; display: flex; flex-direction: column; gap: .3em; align-self: flex-start; width: 128px; }
.maps figure { margin: 0; } .maps img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
.maps figcaption { font-size: .8em; color: var(--muted, #666); }
.side table { font-size: .92em; }
tr.hit td.state { color: var(--hit); font-weight: 600; }
tr.miss td.state { color: var(--miss); font-weight: 600; }
.caption { font-style: italic; margin: 0 0 .4em; }
.dets { display: none; }
body.show-dets .dets { display: inline; }
"""

GALLERY_JS = """
(function () {
  var cat = document.getElementById('f-category');
  var fail = document.getElementById('f-failure');
  var err = document.getElementById('f-error');
  var dets = document.getElementById('f-dets');
  var count = document.getElementById('f-count');
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  function keep(card) {
    var insts = JSON.parse(card.getAttribute('data-inst') || '[]');
    var c = cat.value, f = fail.value, e = err.value;
    if (f === 'all-hit') {
      return insts.every(function (i) { return i[1] === 'hit'; }) &&
             (c === '' || insts.some(function (i) { return i[0] === c; })) &&
             (e === '' || insts.some(function (i) { return i[2] === e; }));
    }
    return insts.some(function (i) {
      if (c !== '' && i[0] !== c) return false;
      if (e !== '' && i[2] !== e) return false;
      if (f === '') return true;
      if (f === 'any-miss') return i[1] !== 'hit';
      return i[1] === f;
    }) || (insts.length === 0 && c === '' && f === '' && e === '');
  }
  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      var k = keep(card);
      card.classList.toggle('hidden', !k);
      if (k) shown++;
    });
    count.textContent = shown + ' of ' + cards.length + ' images shown';
  }
  cat.addEventListener('change', apply);
  fail.addEventListener('change', apply);
  err.addEventListener('change', apply);
  dets.addEventListener('change', function () { document.body.classList.toggle('show-dets', dets.checked); });
  apply();
})();
"""


def failure_kind(inst: InstanceRecord) -> str:
    """``hit``, ``low IoU`` (a detection of the class overlaps too little) or ``not detected``."""
    if inst.hit:
        return "hit"
    return "low IoU" if inst.matched_box is not None or inst.best_iou > 0 else "not detected"


def _category(inst: InstanceRecord) -> str:
    return inst.category or inst.phrase


def _image_src(path: Path, page_dir: Path, *, embed: bool, thumb_size: int) -> str | None:
    if not path.is_file():
        return None
    if not embed:
        return Path(os.path.relpath(path, page_dir)).as_posix()

    with pil_open(path) as im:
        if max(im.size) <= thumb_size and im.format == "PNG" and path.stat().st_size <= 200_000:
            return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        im = im.convert("RGB")
        im.thumbnail((thumb_size, thumb_size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _map_src(path: Path | None, modality: str, *, thumb_size: int) -> str | None:
    """A condition map as an embedded PNG; ADE20K label maps (``sem``) in a fixed palette, so classes show."""
    if path is None or not path.is_file():
        return None
    from PIL import Image

    with pil_open(path) as im:
        im = im.copy()
    if modality == "sem" and im.mode == "L":
        im = im.convert("P")
        # a fixed, well-spread colour per label; 0 ("other") stays black
        im.putpalette([0, 0, 0] + [c for k in range(1, 256) for c in ((k * 97) % 256, (k * 57 + 80) % 256,
                                                                        (k * 151 + 160) % 256)])  # fmt: skip
        im = im.convert("RGB")
    im.thumbnail((thumb_size, thumb_size), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _condition_figures(maps: tuple[Path | None, Path | None] | None, modality: str, *, thumb_size: int) -> str:
    """The input condition and the condition re-extracted from the image, side by side (spatial runs)."""
    if not maps:
        return ""
    figs = []
    for src, label in ((_map_src(maps[0], modality, thumb_size=thumb_size), "input condition"),
                       (_map_src(maps[1], modality, thumb_size=thumb_size), "re-extracted")):  # fmt: skip
        if src:
            figs.append(f'<figure><img src="{esc(src)}" alt="{label}"><figcaption>{label}</figcaption></figure>')
    return f'<div class="maps">{"".join(figs)}</div>' if figs else ""


def _rect(box: Sequence[float], w: int, h: int) -> str:
    x0, y0, x1, y1 = box
    return f'x="{x0 * w:.2f}" y="{y0 * h:.2f}" width="{max(0.0, (x1 - x0) * w):.2f}" height="{max(0.0, (y1 - y0) * h):.2f}"'


def _overlay(sample: SampleRecord, layout: Layout | None, insts: list[InstanceRecord], dets: list[Detection],
             skeleton: Sequence[tuple[int, int]]) -> str:  # fmt: skip
    w, h = sample.width, sample.height
    sw = max(1.0, min(w, h) / 128)
    parts = [f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">']
    parts.append('<g class="dets">')
    for d in dets:
        parts.append(f'<rect {_rect(d.box, w, h)} fill="none" stroke="#0969da" stroke-width="{sw:.2f}" '
                     f'stroke-opacity="0.8"><title>{esc(d.label)} {d.score:.2f}</title></rect>')  # fmt: skip
        if d.keypoints:
            for x, y, v in d.keypoints:
                if v > 0:
                    parts.append(f'<circle cx="{x * w:.2f}" cy="{y * h:.2f}" r="{sw:.2f}" fill="#0969da"/>')
    parts.append("</g>")
    by_index = {i.object_index: i for i in insts}
    objects = list(layout.objects) if layout is not None else []
    for j, obj in enumerate(objects):
        inst = by_index.get(j)
        color = HIT_COLOR if inst is not None and inst.hit else MISS_COLOR
        title = f"{j + 1}. {obj.phrase}" + (f" -- {inst.reason}" if inst is not None else " -- not scored")
        parts.append(f'<rect class="obj" {_rect(obj.box, w, h)} fill="none" stroke="{color}" '
                     f'stroke-width="{1.5 * sw:.2f}"><title>{esc(title)}</title></rect>')  # fmt: skip
        fs = max(6.0, min(w, h) / 14)
        parts.append(f'<text x="{obj.box[0] * w + sw:.2f}" y="{obj.box[1] * h + fs:.2f}" font-size="{fs:.1f}" '
                     f'fill="{color}" stroke="#fff" stroke-width="{sw / 2:.2f}" paint-order="stroke">{j + 1}</text>')  # fmt: skip
        if inst is not None and inst.matched_box is not None:
            parts.append(f'<rect class="match" {_rect(inst.matched_box, w, h)} fill="none" stroke="{color}" '
                         f'stroke-width="{sw:.2f}" stroke-dasharray="{3 * sw:.1f} {2 * sw:.1f}"/>')  # fmt: skip
        if obj.keypoints is not None:
            pts = obj.keypoints
            for a, b in skeleton:
                pa, pb = pts[a - 1], pts[b - 1]
                if pa[2] > 0 and pb[2] > 0:
                    parts.append(f'<line x1="{pa[0] * w:.2f}" y1="{pa[1] * h:.2f}" x2="{pb[0] * w:.2f}" '
                                 f'y2="{pb[1] * h:.2f}" stroke="#bf8700" stroke-width="{sw:.2f}"/>')  # fmt: skip
            for x, y, v in pts:
                if v > 0:
                    parts.append(f'<circle cx="{x * w:.2f}" cy="{y * h:.2f}" r="{1.5 * sw:.2f}" fill="#bf8700"/>')
    parts.append("</svg>")
    return "".join(parts)


def sample_order_key(insts: list[InstanceRecord], sample: SampleRecord) -> tuple:
    """Worst first: share of objects hit, then mean IoU, then layout id and seed (stable)."""
    if not insts:
        return (2.0, 2.0, sample.layout_id, sample.seed)
    hit = sum(1 for i in insts if i.hit) / len(insts)
    miou = sum(i.best_iou for i in insts) / len(insts)
    return (hit, miou, sample.layout_id, sample.seed)


def render_gallery(run: RunData, page_dir: Path, *, max_samples: int = 200, max_detections: int = 10,
                   embed: bool = True, thumb_size: int = 256) -> str:  # fmt: skip
    """HTML of the gallery of ``run`` (image links, if not embedded, relative to ``page_dir``)."""
    from gligen_eval.scoring.coco import COCO_SKELETON

    insts_by: dict[str, list[InstanceRecord]] = defaultdict(list)
    for i in run.instances:
        insts_by[i.sample_key].append(i)
    dets_all = run.detections
    samples = sorted(run.samples, key=lambda s: sample_order_key(insts_by.get(s.sample_key, []), s))
    total = len(samples)
    samples = samples[:max_samples]
    categories = sorted({_category(i) for s in samples for i in insts_by.get(s.sample_key, [])})

    cond_maps = run.condition_maps
    cards = []
    for s in samples:
        insts = sorted(insts_by.get(s.sample_key, []), key=lambda i: i.object_index)
        layout = run.layouts.get(s.layout_id)
        dets = sorted(dets_all.get(s.sample_key, []), key=lambda d: -d.score)[:max_detections]
        src = _image_src(run.image_path(s), page_dir, embed=embed, thumb_size=thumb_size)
        img = (f'<img src="{esc(src)}" alt="generated image {esc(s.sample_key)}" width="{s.width}" height="{s.height}">'
               if src else '<div class="missing">image missing</div>')  # fmt: skip
        rows = []
        for inst in insts:
            state = "hit" if inst.hit else "miss"
            rows.append(
                f'<tr class="{state}"><td class="num">{inst.object_index + 1}</td><td>{esc(inst.phrase)}</td>'
                f"<td>{esc(inst.category or '')}</td><td class=\"num\">{inst.best_iou:.2f}</td>"
                f'<td class="state">{esc(failure_kind(inst))}</td><td>{esc(inst.error_type or "")}</td>'
                f"<td>{esc(inst.reason)}</td></tr>"
            )
        inst_table = ("<table><thead><tr><th>#</th><th>phrase</th><th>category</th><th>IoU</th><th>result</th>"
                      "<th>error</th><th>reason</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else \
            '<p class="muted">no scored objects</p>'  # fmt: skip
        det_rows = "".join(
            f'<tr><td>{esc(d.label)}</td><td class="num">{d.score:.3f}</td>'
            f'<td class="num">{", ".join(f"{v:.2f}" for v in d.box)}</td></tr>' for d in dets
        )
        n_det = len(dets_all.get(s.sample_key, []))
        det_table = (f"<details><summary>detections ({n_det}{', top ' + str(len(dets)) if n_det > len(dets) else ''})"
                     "</summary><table><thead><tr><th>label</th><th>score</th><th>box (x0, y0, x1, y1)</th></tr>"
                     f"</thead><tbody>{det_rows}</tbody></table></details>") if dets else \
            '<p class="muted">no detections</p>'  # fmt: skip
        caption = esc(layout.caption) if layout is not None else "(layout missing)"
        data_inst = json.dumps([[_category(i), failure_kind(i), i.error_type or ""] for i in insts], ensure_ascii=False)
        n_hit = sum(1 for i in insts if i.hit)
        cards.append(
            f'<div class="card" data-inst="{esc(data_inst)}" data-sample="{esc(s.sample_key)}">'
            f'<div class="imgbox">{img}{_overlay(s, layout, insts, dets, COCO_SKELETON)}</div>'
            f"{_condition_figures(cond_maps.get(s.sample_key), run.modality, thumb_size=thumb_size // 2)}"
            f'<div class="side"><p class="caption">{caption}</p>'
            f'<p class="muted">layout <code>{esc(s.layout_id)}</code> · seed {s.seed} · {n_hit}/{len(insts)} objects hit'
            f" · {esc(s.width)}x{esc(s.height)}</p>{inst_table}{det_table}</div></div>"
        )
    cat_opts = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in categories)
    fail_opts = ('<option value="">any result</option><option value="any-miss">has a miss</option>'
                 + "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in FAILURE_KINDS if k != "hit")
                 + '<option value="hit">has a hit</option><option value="all-hit">all objects hit</option>')  # fmt: skip
    err_opts = '<option value="">any</option>' + "".join(
        f'<option value="{esc(k)}">has {esc(k)}</option>' for k in ERROR_TYPES)
    warn = ('<p class="warn">This run used random weights: the images and scores exercise the pipeline only.</p>'
            if run.random_weights else "")  # fmt: skip
    metrics = " · ".join(f"{k} {run.metric(k):.3f}" for k in ("box/AP", "box/mIoU", "box/success")
                         if run.metric(k) is not None)  # fmt: skip
    shown = f"the worst {len(samples)} of {total}" if total > len(samples) else f"all {total}"
    body = (
        f"<h1>Gallery: {esc(run.label)}</h1>\n"
        f'<p class="muted">model <code>{esc(run.model_name)}</code> · {esc(run.modality)} · {esc(run.dataset)} · '
        f"{esc(run.sampler_text)}<br>{esc(metrics)}<br>Showing {shown} images, worst first (share of objects hit, "
        "then mean IoU). Green: hit; red: miss; dashed: the best-matching detection; numbers refer to the table."
        f"</p>\n{warn}"
        '<div class="controls"><label>category <select id="f-category"><option value="">all</option>'
        f'{cat_opts}</select></label><label>result <select id="f-failure">{fail_opts}</select></label>'
        f'<label>error type <select id="f-error">{err_opts}</select></label>'
        '<label><input type="checkbox" id="f-dets"> show all detections</label>'
        '<span id="f-count" class="muted"></span></div>\n'
        + "\n".join(cards)
    )  # fmt: skip
    return page(f"gligen-eval gallery: {run.label}", body, css=GALLERY_CSS, js=GALLERY_JS)


def write_gallery(run: RunData, out_html: Path, **kwargs: Any) -> Path:
    """Write the gallery page of ``run`` to ``out_html`` (see :func:`render_gallery` for the options)."""
    from gligen_eval.store import atomic_write_text

    out_html.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_html, render_gallery(run, out_html.parent, **kwargs))
    return out_html
