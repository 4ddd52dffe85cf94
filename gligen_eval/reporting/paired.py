"""Paired statistics of ``gligen-eval compare``: which samples pair up, and each metric's value on
any draw of layouts (for :func:`~gligen_eval.scoring.stats.paired_bootstrap_diff`).

:func:`recompute_kind` is the one place that says how a metric key is recomputed per layout;
every other key is compared as point values.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

from gligen_eval.errors import GligenEvalError
from gligen_eval.reporting.rundata import RunData


class UnusableInput(GligenEvalError):
    """The two runs cannot be compared as they are (the message says what differs)."""


def recompute_kind(key: str) -> str | None:
    """How ``key`` is recomputed on a draw of layouts, as the scorer that writes it declares
    (:attr:`~gligen_eval.scoring.protocol.KeySpec.paired`):

    * ``"pooled"``: pooled mean over the drawn layouts' values that the scorer reads back from the
      run's rows (:meth:`~gligen_eval.scoring.protocol.Scorer.sample_values`: instances, ``cond.jsonl``,
      ``comp.jsonl``);
    * ``"box"`` / ``"kp"``: COCO (LVIS-style for LVIS layouts) evaluation of the drawn images from the
      stored detections (:class:`CocoStat`);
    * ``None``: not a sum over layouts (``fid``, ``kid``, ``clip/*``, ratios, real-image ceilings):
      point values only.
    """
    from gligen_eval.scoring.protocol import key_spec

    spec = key_spec(key)
    return {"coco:bbox": "box", "coco:keypoints": "kp", "pooled": "pooled"}.get(spec.paired) if spec else None


def pooled_values(run: RunData, key: str, pairs: Iterable[tuple[str, str]],
                  layout_ids: Iterable[str]) -> dict[str, list[float]] | None:  # fmt: skip
    """{layout id: the values behind ``key`` of its paired samples} (``pairs``: ``(layout_id, sample_key)``),
    from the rows of the scorer that declares ``key``; ``None`` when the run has none."""
    from gligen_eval.scoring.protocol import key_owner

    owner = key_owner(key)
    values = owner.sample_values(run, key) if owner is not None else None
    if values is None:
        return None
    out: dict[str, list[float]] = {lid: [] for lid in layout_ids}
    for lid, sk in pairs:
        out.setdefault(lid, []).extend(values.get(sk, ()))
    return out


def sample_pairs(base: RunData, cand: RunData, allow_mismatch: bool) -> tuple[dict, list[str]]:
    """{(layout_id, seed): (base sample, cand sample)} and notes; refuses mismatches unless allowed."""
    notes = []
    problems = []
    b_s = {(s.layout_id, s.seed): s for s in base.samples}
    c_s = {(s.layout_id, s.seed): s for s in cand.samples}
    if not b_s:
        raise UnusableInput(f"baseline {base.path} has no samples (samples.jsonl is empty or missing)")
    if not c_s:
        raise UnusableInput(f"candidate {cand.path} has no samples (samples.jsonl is empty or missing)")
    only_b = sorted(set(b_s) - set(c_s))
    only_c = sorted(set(c_s) - set(b_s))

    def eg(pairs):
        return ", ".join(f"{lid}/seed {seed}" for lid, seed in pairs[:3])

    if only_b:
        problems.append(f"{len(only_b)} (layout, seed) pair(s) only in the baseline (e.g. {eg(only_b)})")
    if only_c:
        problems.append(f"{len(only_c)} (layout, seed) pair(s) only in the candidate (e.g. {eg(only_c)})")
    changed = sorted(
        lid for lid in set(base.layouts) & set(cand.layouts)
        if base.layouts[lid].content_hash() != cand.layouts[lid].content_hash()
    )  # fmt: skip
    if changed:
        problems.append(f"{len(changed)} layout(s) with the same id but different content (e.g. {', '.join(changed[:3])})")
    b_det, c_det = base.detector_fingerprint, cand.detector_fingerprint
    if b_det and c_det and b_det != c_det:
        problems.append(f"different detectors ({base.detector_name} {b_det} vs {cand.detector_name} {c_det})")
    b_sc, c_sc = base.config.get("scoring") or {}, cand.config.get("scoring") or {}
    if b_sc.get("success_iou") != c_sc.get("success_iou"):
        problems.append(f"different scoring.success_iou ({b_sc.get('success_iou')} vs {c_sc.get('success_iou')})")
    if problems and not allow_mismatch:
        raise UnusableInput("the runs are not paired: " + "; ".join(problems) +
                            ". Compare runs of the same layouts and seeds, or pass --allow-mismatch to use the "
                            "pairs they share")  # fmt: skip
    pairs = {k: (b_s[k], c_s[k]) for k in sorted(set(b_s) & set(c_s)) if k[0] not in set(changed)}
    if problems:
        notes.append("compared despite: " + "; ".join(problems) + f" (kept {len(pairs)} shared pairs)")
    if not pairs:
        raise UnusableInput("the runs share no (layout, seed) pair with the same layout content")
    missing = [lid for lid, _ in pairs if lid not in base.layouts or lid not in cand.layouts]
    if missing:
        raise UnusableInput(f"layouts.jsonl lacks layout(s) used by the samples (e.g. {', '.join(missing[:3])})")
    return pairs, notes


# --------------------------------------------------------------------------------------------
# statistics per layout


def coco_items(run: RunData, samples: list, family: str) -> dict[str, list[tuple]]:
    """{layout_id: [(sample_key, layout, width, height, detections), ...]} for the paired samples, as
    the run scored them: ``box`` with the detector's detections (phrase labels relabelled with the
    objects' classes), ``kp`` with the pose model's detections on the layouts with keypoints."""
    if family == "kp":
        dets = run.detections_of("pose")
        samples = [s for s in samples if any(o.keypoints is not None for o in run.layouts[s.layout_id].objects)]
        relabel = False
    else:
        dets = run.detections
        relabel = run.detector_takes_phrases
    from gligen_eval.scoring.boxes import relabel_phrases, scored_layout

    # a closed-set detector's classes, as the run recorded them: objects of other classes were not scored
    classes = ((run.manifest.get("models") or {}).get("detector") or {}).get("classes") if family == "box" else None
    out: dict[str, list[tuple]] = defaultdict(list)
    for s in samples:
        if s.sample_key not in dets:
            raise UnusableInput(f"{run.path}: no {'pose ' if family == 'kp' else ''}detections stored for sample "
                                f"{s.sample_key} (layout {s.layout_id}, seed {s.seed}); the run is incomplete")  # fmt: skip
        lay = run.layouts[s.layout_id]
        d = relabel_phrases(dets[s.sample_key], lay) if relabel else dets[s.sample_key]
        out[s.layout_id].append((s.sample_key, scored_layout(lay, classes), s.width, s.height, d))
    return dict(out)


def family_data(run: RunData, family: str) -> bool:
    """Whether ``run`` holds the per-image data to recompute its ``family`` COCO keys per draw (an LVIS run
    whose layouts.jsonl predates the layouts' LVIS ids has not: its LVIS AP is compared as point values)."""
    if family == "kp":
        return bool(run.detections_of("pose"))
    if "box/APr" in run.metrics and not all(lay.lvis_style for lay in run.layouts.values()):
        return False
    return bool(run.detections)


class CocoStat:
    """COCO summary of a draw of layouts, memoized so that every key of one family costs one evaluation.

    The full set of a run (its layouts in order, the point estimate) is evaluated with the run's
    backend. A draw re-accumulates the per-image matches of the drawn images
    (:class:`~gligen_eval.scoring.matches.ImageMatches`, set up once per run with :meth:`register`),
    which gives the numbers of evaluating the drawn dataset; without it the drawn dataset is built
    and evaluated.
    """

    def __init__(self, iou_type: str, backend: str, lvis_style: bool = False):
        self.iou_type = iou_type
        self.backend = backend
        self.lvis_style = lvis_style
        self.cache: dict[tuple[int, ...], dict[str, float]] = {}
        self._columns: dict[int, tuple[int, Any]] = {}  # id(layout item list) -> (run slot, image columns)
        self._runs: list[tuple[Any, tuple[int, ...], list]] = []  # (matches, full key, the lists kept alive)
        self._drawers: dict[tuple[int, ...], Callable[[Any], dict[str, float]]] = {}

    @property
    def fast(self) -> bool:
        return bool(self._runs) and all(m is not None for m, _, _ in self._runs)

    def register(self, items_by_layout: Mapping[str, list[tuple]]) -> None:
        """Evaluate a run's images once, for re-accumulating its draws."""
        import numpy as np

        from gligen_eval.scoring import coco
        from gligen_eval.scoring.matches import ImageMatches

        lists = [v for v in items_by_layout.values() if v]
        flat = [row for rows in lists for row in rows]
        try:
            gt, results = coco.build_eval_inputs(flat, iou_type=self.iou_type)  # type: ignore[arg-type]
            matches: Any = ImageMatches(gt, results, iou_type=self.iou_type, lvis_style=self.lvis_style)  # type: ignore[arg-type]
        except (ImportError, AttributeError, TypeError, ValueError, KeyError):
            matches = None
        slot = len(self._runs)
        self._runs.append((matches, tuple(id(v) for v in lists), lists))
        # build_eval_inputs numbers the images by sample key: each row's column is its place in that order
        order = sorted(range(len(flat)), key=lambda i: str(flat[i][0]))
        position = np.empty(len(flat), dtype=np.int64)
        position[order] = np.arange(len(flat), dtype=np.int64)
        start = 0
        for v in lists:
            self._columns[id(v)] = (slot, position[start : start + len(v)])
            start += len(v)

    def _fast_metrics(self, items: list[list[tuple]]) -> dict[str, float] | None:
        import numpy as np

        nonempty = [x for x in items if x]
        found = [self._columns.get(id(x)) for x in nonempty]
        if not found or any(f is None for f in found) or len({f[0] for f in found}) != 1:  # type: ignore[index]
            return None
        slot = found[0][0]  # type: ignore[index]
        matches, full_key, _ = self._runs[slot]
        if matches is None or tuple(id(x) for x in nonempty) == full_key:
            return None  # the point estimate: evaluated as the run scored it
        # in column order, as evaluating the drawn images would number them (copies side by side)
        return matches.summary(np.sort(np.concatenate([f[1] for f in found]), kind="stable"))  # type: ignore[index]

    def metrics(self, items: list[list[tuple]]) -> dict[str, float]:
        from gligen_eval.scoring import coco

        key = tuple(id(x) for x in items)  # the draw itself (its layouts' item lists, in draw order), not a hash
        hit = self.cache.get(key)
        if hit is None:
            hit = self._fast_metrics(items)
            if hit is None:
                flat = [row for layout_items in items for row in layout_items]
                gt, results = coco.build_eval_inputs(flat, iou_type=self.iou_type)  # type: ignore[arg-type]
                hit = coco.evaluate_coco(gt, results, iou_type=self.iou_type, backend=self.backend,  # type: ignore[arg-type]
                                         lvis_style=self.lvis_style)  # fmt: skip
            self.cache[key] = hit
        return hit

    def drawer(self, items: list[list[tuple]]) -> Callable[[Any], dict[str, float]] | None:
        """``draw indices -> summary`` for draws over ``items`` (one run's layouts), memoized per draw;
        ``None`` when the items are not one registered run's."""
        import numpy as np

        sig = tuple(id(x) for x in items)
        hit = self._drawers.get(sig)
        if hit is not None:
            return hit
        found = [self._columns.get(id(x)) if x else None for x in items]
        slots = {f[0] for f in found if f is not None}
        if len(slots) != 1 or any(f is None and x for f, x in zip(found, items)):
            return None
        matches = self._runs[slots.pop()][0]
        if matches is None:
            return None
        per_item = [f[1] if f is not None else np.zeros(0, dtype=np.int64) for f in found]
        flat = np.concatenate(per_item) if per_item else np.zeros(0, dtype=np.int64)
        lens = np.asarray([c.size for c in per_item], dtype=np.int64)
        starts = np.cumsum(lens) - lens
        memo: dict[bytes, dict[str, float]] = {}

        def on_draw(row: Any) -> dict[str, float]:
            row = np.asarray(row, dtype=np.int64)
            key = row.tobytes()
            out = memo.get(key)
            if out is None:
                ln = lens[row]
                pos = np.arange(int(ln.sum()), dtype=np.int64) - np.repeat(np.cumsum(ln) - ln - starts[row], ln)
                out = memo[key] = matches.summary(np.sort(flat[pos], kind="stable"))
            return out

        self._drawers[sig] = on_draw
        return on_draw

    def fn(self, name: str) -> Callable[[list[Any]], float]:
        return KeyStat(self, name)


class KeyStat:
    """One COCO key of a :class:`CocoStat`; ``for_items`` gives the bootstrap its per-draw fast path."""

    def __init__(self, owner: CocoStat, name: str):
        self.owner, self.name = owner, name

    def _value(self, metrics: Mapping[str, float]) -> float:
        v = metrics.get(self.name, float("nan"))
        return float("nan") if v is None or v < 0 else float(v)

    def __call__(self, items: list[Any]) -> float:
        return self._value(self.owner.metrics(items))

    def for_items(self, items: list[Any]) -> Callable[[Any], float]:
        on_draw = self.owner.drawer(items)
        if on_draw is None:
            return lambda row: self([items[j] for j in row])
        return lambda row: self._value(on_draw(row))



def coco_stat(family: str, base: RunData, cand: RunData, b_samples: list, c_samples: list) -> tuple[CocoStat, dict, dict]:
    """The :class:`CocoStat` of a COCO family (``box`` or ``kp``) with both runs registered, and each
    run's items by layout (:func:`coco_items`); box AP is LVIS-style when the layouts are."""
    from gligen_eval.scoring import coco

    iou_type = "bbox" if family == "box" else "keypoints"
    lvis = family == "box" and coco.lvis_style_of(
        [*(base.layouts[s.layout_id] for s in b_samples), *(cand.layouts[s.layout_id] for s in c_samples)])
    st = CocoStat(iou_type, base.cfg("scoring", "backend", "faster"), lvis_style=lvis)
    a_items, b_items = coco_items(base, b_samples, family), coco_items(cand, c_samples, family)
    st.register(a_items)
    st.register(b_items)
    return st, a_items, b_items
