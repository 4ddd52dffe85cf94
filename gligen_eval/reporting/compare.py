"""Paired run-vs-run comparison and the regression gate (``gligen-eval compare``).

Both runs must hold the same layouts (same ids and content) and the same seeds: samples are
paired by ``(layout_id, seed)``. For every metric the difference ``candidate - baseline`` gets a
paired bootstrap interval, resampling **layouts** with the same draws for both runs
(:func:`gligen_eval.scoring.stats.paired_bootstrap_diff`):

* ``box/mIoU`` and ``box/success`` are pooled means over the instances of the drawn layouts;
* the COCO keys (``box/AP``, ``box/AP50``, ..., ``kp/AP``, ...) are recomputed on every draw from
  the stored detections and the layout boxes, as the run scored them (``box/``: the detector's
  detections, phrase labels mapped to the objects' classes, only the objects of a closed-set
  detector's recorded classes, in the canonical order of :func:`~gligen_eval.scoring.coco.build_eval_inputs`
  so that a run compared with itself reproduces its ``metrics.json``; ``kp/``: the pose model's detections on
  the layouts with keypoints); duplicated layouts become separate images. Each run's images are
  matched once and a draw re-accumulates the matches of its images, which gives the numbers of
  evaluating the drawn dataset (:mod:`gligen_eval.scoring.matches`). LVIS-style ``box/`` AP
  (it needs the LVIS source) is compared as point values;
* the condition-consistency keys (``cond/*`` of spatial runs) are pooled means over the images of
  the drawn layouts, from the runs' ``cond.jsonl`` rows (the real-image ceiling ``cond/real/*`` is
  compared as point values);
* metrics that are not sums over layouts (``fid``, ``kid``, ``clip/*``) are compared as point
  values, without an interval.

A gate file (YAML) sets the rule per metric::

    metrics:
      box/AP:   {max_drop: 0.01, confidence: 0.95}   # AP may not drop by more than 1 point
      box/mIoU: {max_drop: 0.02}
      fid:      {max_rise: 0.5}
      kp/AP:    {min: 0.2}                           # absolute bound on the candidate
    confidence: 0.95                                 # default for the metrics above
    bootstrap: {n_boot: 1000, n_boot_ap: 1000, seed: 0}

A metric *regresses* when the whole interval of its difference lies beyond the allowed change
(``hi < -max_drop``, or ``lo > max_rise``), so noise alone does not fail a gate; without an
interval the point difference is used. Values are in the metric's own units (AP is a fraction:
one AP point is 0.01). Exit codes: 0 pass (or no gate), 1 regression, 2 unusable input.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from gligen_eval.errors import GligenEvalError, InputError
from gligen_eval.reporting import metricinfo as mi
from gligen_eval.reporting.rundata import COUNT_KEYS, RunData

RULE_KEYS = ("max_drop", "max_rise", "confidence", "min", "max")
GATE_KEYS = ("metrics", "confidence", "bootstrap")
BOOTSTRAP_KEYS = ("n_boot", "n_boot_ap", "seed")
INSTANCE_KEYS = {"box/mIoU": "best_iou", "box/success": "hit"}


class UnusableInput(GligenEvalError):
    """The two runs cannot be compared as they are (the message says what differs)."""


@dataclass
class Rule:
    max_drop: float | None = None
    max_rise: float | None = None
    confidence: float = 0.95
    min: float | None = None
    max: float | None = None

    def text(self, with_confidence: bool = True) -> str:
        parts = []
        if self.max_drop is not None:
            parts.append(f"drop ≤ {self.max_drop:g}")
        if self.max_rise is not None:
            parts.append(f"rise ≤ {self.max_rise:g}")
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        relative = self.max_drop is not None or self.max_rise is not None
        return ", ".join(parts) + (f" @{self.confidence:.0%}" if relative and with_confidence else "")


@dataclass
class Gate:
    rules: dict[str, Rule] = field(default_factory=dict)
    n_boot: int = 1000
    n_boot_ap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    source: str | None = None


def _number(value: Any, where: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else (f" >= {lo}" if lo is not None else "")
        raise InputError(f"{where} must be a{'n integer' if integer else ' number'}{rng}, got {value!r}")
    return int(value) if integer else float(value)


def parse_gate(data: Any, source: str | None = None) -> Gate:
    """Check a gate mapping (see the module docstring); errors name the file and the key."""
    where = source or "gate"
    if not isinstance(data, Mapping):
        raise InputError("the gate file must be a mapping with a 'metrics' section", path=source)
    unknown = sorted(set(data) - set(GATE_KEYS))
    if unknown:
        raise InputError(f"unknown gate key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(GATE_KEYS)})", path=source)
    gate = Gate(source=source)
    if "confidence" in data:
        gate.confidence = _number(data["confidence"], f"{where}: confidence", lo=0.5, hi=0.999999)
    boot = data.get("bootstrap") or {}
    if not isinstance(boot, Mapping):
        raise InputError("'bootstrap' must be a mapping", path=source)
    unknown = sorted(set(boot) - set(BOOTSTRAP_KEYS))
    if unknown:
        raise InputError(f"unknown bootstrap key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(BOOTSTRAP_KEYS)})",
                         path=source)  # fmt: skip
    for k in BOOTSTRAP_KEYS:
        if k in boot:
            setattr(gate, k, _number(boot[k], f"{where}: bootstrap.{k}", lo=0 if k == "seed" else 1, integer=True))
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise InputError("'metrics' must map metric names to rules, e.g. {box/AP: {max_drop: 0.01}}", path=source)
    for key, raw in metrics.items():
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InputError(f"the rule of {key!r} must be a mapping", path=source, record=str(key))
        unknown = sorted(set(raw) - set(RULE_KEYS))
        if unknown:
            raise InputError(f"unknown rule key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(RULE_KEYS)})",
                             path=source, record=str(key))  # fmt: skip
        rule = Rule(confidence=gate.confidence)
        for k in RULE_KEYS:
            if k in raw:
                if k == "confidence":
                    v = _number(raw[k], f"{where} [{key}]: confidence", lo=0.5, hi=0.999999)
                elif k in ("max_drop", "max_rise"):
                    v = _number(raw[k], f"{where} [{key}]: {k}", lo=0.0)
                else:
                    v = _number(raw[k], f"{where} [{key}]: {k}")
                setattr(rule, k, v)
        if all(getattr(rule, k) is None for k in ("max_drop", "max_rise", "min", "max")):
            raise InputError("the rule sets none of max_drop, max_rise, min, max", path=source, record=str(key))
        gate.rules[str(key)] = rule
    return gate


def default_gate(keys: Iterable[str], *, max_drop: float = 0.01, fid_max_rise: float = 0.5,
                 confidence: float = 0.95) -> Gate:  # fmt: skip
    """A gate for the headline metrics among ``keys`` (those both runs have).

    ``box/AP``, ``box/mIoU``, ``box/success`` and ``kp/AP`` may not drop by more than ``max_drop``
    (one point), and ``fid`` may not rise by more than ``fid_max_rise``, at ``confidence``. The
    pytest plugin uses it when ``--gligen-baseline`` is given without ``--gligen-gate``.
    """
    have = set(keys)
    rules = {k: Rule(max_drop=max_drop, confidence=confidence)
             for k in ("box/AP", "box/mIoU", "box/success", "kp/AP") if k in have}  # fmt: skip
    if "fid" in have:
        rules["fid"] = Rule(max_rise=fid_max_rise, confidence=confidence)
    return Gate(rules=rules, confidence=confidence, source="built-in default gate")


def load_gate(path: Path) -> Gate:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError("gate file not found", path=str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML ({str(e).splitlines()[0]})", path=str(p)) from None
    return parse_gate(data, source=str(p))


# --------------------------------------------------------------------------------------------
# pairing


def _sample_pairs(base: RunData, cand: RunData, allow_mismatch: bool) -> tuple[dict, list[str]]:
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


def _instance_values(run: RunData, keys: set[str], field_name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    by_sample = defaultdict(list)
    for inst in run.instances:
        by_sample[inst.sample_key].append(float(getattr(inst, field_name)))
    for lid, sample_key in keys:
        out.setdefault(lid, []).extend(by_sample.get(sample_key, []))
    return out


def _coco_items(run: RunData, samples: list, family: str) -> dict[str, list[tuple]]:
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


def _family_data(run: RunData, family: str) -> bool:
    """Whether ``run`` holds the per-image data to recompute its ``family`` COCO keys per draw."""
    if family == "kp":
        return bool(run.detections_of("pose"))
    return bool(run.detections) and "box/APr" not in run.metrics  # LVIS-style AP needs the LVIS source


class _CocoStat:
    """COCO summary of a draw of layouts, memoized so that every key of one family costs one evaluation.

    The full set of a run (its layouts in order, the point estimate) is evaluated with the run's
    backend. A draw re-accumulates the per-image matches of the drawn images
    (:class:`~gligen_eval.scoring.matches.ImageMatches`, set up once per run with :meth:`register`),
    which gives the numbers of evaluating the drawn dataset; without it the drawn dataset is built
    and evaluated.
    """

    def __init__(self, iou_type: str, backend: str):
        self.iou_type = iou_type
        self.backend = backend
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
            matches: Any = ImageMatches(gt, results, iou_type=self.iou_type)  # type: ignore[arg-type]
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
                hit = coco.evaluate_coco(gt, results, iou_type=self.iou_type, backend=self.backend)  # type: ignore[arg-type]
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
        return _KeyStat(self, name)


class _KeyStat:
    """One COCO key of a :class:`_CocoStat`; ``for_items`` gives the bootstrap its per-draw fast path."""

    def __init__(self, owner: _CocoStat, name: str):
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


# --------------------------------------------------------------------------------------------
# result


@dataclass
class MetricRow:
    key: str
    baseline: float | None
    candidate: float | None
    diff: float | None
    lo: float | None = None
    hi: float | None = None
    confidence: float | None = None
    method: str = "point"
    rule: str = ""
    verdict: str = "info"  # pass | regression | info | n/a
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: clean(v) for k, v in self.__dict__.items()}


@dataclass
class CompareResult:
    """What ``gligen-eval compare`` prints; ``exit_code`` 0 pass, 1 regression, 2 unusable input."""

    exit_code: int
    verdict: str  # "pass" | "regression" | "unusable"
    message: str
    baseline: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    rows: list[MetricRow] = field(default_factory=list)
    paired: dict[str, Any] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    gate: str | None = None
    notes: list[str] = field(default_factory=list)
    config_diff: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def regressions(self) -> list[MetricRow]:
        return [r for r in self.rows if r.verdict == "regression"]

    def row(self, key: str) -> MetricRow:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (NaN becomes null)."""
        return {
            "verdict": self.verdict, "exit_code": self.exit_code, "message": self.message, "gate": self.gate,
            "baseline": self.baseline, "candidate": self.candidate, "paired": self.paired,
            "bootstrap": self.bootstrap, "metrics": [r.to_dict() for r in self.rows], "notes": self.notes,
            "config_diff": self.config_diff,
        }  # fmt: skip

    @property
    def markdown(self) -> str:
        return render_markdown(self)


def _run_info(r: RunData) -> dict[str, Any]:
    return {"path": str(r.path), "name": r.label, "model": r.model_name, "config_hash": r.config_hash, "git": r.git,
            "generator_fp": r.generator_fingerprint, "detector_fp": r.detector_fingerprint}  # fmt: skip


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[Any]]:
    fa, fb = _flatten(a), _flatten(b)
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))
            if k not in ("name", "out") and fa.get(k) != fb.get(k)}  # fmt: skip


def _judge(row: MetricRow, rule: Rule | None) -> None:
    if rule is None:
        return
    row.rule = rule.text(with_confidence=row.lo is not None)
    if row.diff is None or not math.isfinite(row.diff) or row.candidate is None:
        row.verdict = "n/a"
        row.note = (row.note + "; " if row.note else "") + "undefined in at least one run"
        return
    bad = []
    has_ci = row.lo is not None and row.hi is not None and math.isfinite(row.lo) and math.isfinite(row.hi)
    if rule.max_drop is not None:
        bound = row.hi if has_ci else row.diff
        if bound < -rule.max_drop:
            bad.append(f"dropped by more than {rule.max_drop:g}")
    if rule.max_rise is not None:
        bound = row.lo if has_ci else row.diff
        if bound > rule.max_rise:
            bad.append(f"rose by more than {rule.max_rise:g}")
    if rule.min is not None and row.candidate < rule.min:
        bad.append(f"below {rule.min:g}")
    if rule.max is not None and row.candidate > rule.max:
        bad.append(f"above {rule.max:g}")
    row.verdict = "regression" if bad else "pass"
    if bad:
        row.note = (row.note + "; " if row.note else "") + ", ".join(bad)


def compare_runs(baseline: Path, candidate: Path, gate: Path | Gate | None = None, allow_mismatch: bool = False, *,
                 n_boot: int | None = None, seed: int | None = None) -> CompareResult:  # fmt: skip
    """Compare ``candidate`` with ``baseline`` over their shared layouts and seeds.

    Never raises for user errors: unreadable runs, unpaired runs, a bad gate file or a gate metric
    that a run lacks give ``exit_code`` 2 with the reason in ``message``.
    """
    try:
        return _compare(Path(baseline), Path(candidate), gate, allow_mismatch, n_boot, seed)
    except GligenEvalError as e:
        return CompareResult(exit_code=2, verdict="unusable", message=str(e),
                             gate=str(gate) if gate is not None and not isinstance(gate, Gate) else None)  # fmt: skip


def _compare(baseline: Path, candidate: Path, gate_arg: Path | Gate | None, allow_mismatch: bool,
             n_boot: int | None, seed: int | None) -> CompareResult:  # fmt: skip
    from gligen_eval.scoring import coco, stats

    gate = gate_arg if isinstance(gate_arg, Gate) else (load_gate(gate_arg) if gate_arg is not None else None)
    settings = gate or Gate()
    n_boot = n_boot or settings.n_boot
    n_boot_ap = min(settings.n_boot_ap, n_boot)
    seed = settings.seed if seed is None else seed
    base, cand = RunData(baseline), RunData(candidate)
    pairs, notes = _sample_pairs(base, cand, allow_mismatch)
    layout_ids = sorted({lid for lid, _ in pairs})

    counts = (*COUNT_KEYS, "n_instances_unmapped")
    b_keys = set(mi.metric_keys(base.metrics, skip=counts))
    c_keys = set(mi.metric_keys(cand.metrics, skip=counts))
    recomputable = set(INSTANCE_KEYS)
    box_keys = {f"box/{k}" for k in coco.metric_keys("bbox")}
    kp_keys = {f"kp/{k}" for k in coco.metric_keys("keypoints")}
    if gate is not None:
        missing = []
        for key in gate.rules:
            if key in b_keys and key in c_keys:
                continue
            if key in recomputable and base.instances and cand.instances:
                continue
            where = [name for name, have in (("baseline", key in b_keys), ("candidate", key in c_keys)) if not have]
            missing.append(f"{key} (missing in the {' and '.join(where)} metrics.json)")
        if missing:
            raise UnusableInput("gate metric(s) not available: " + "; ".join(missing) +
                                f". The baseline has: {', '.join(sorted(b_keys)) or 'none'}")  # fmt: skip
    keys = mi.order_metrics((b_keys & c_keys) | (set(gate.rules) if gate else set()))

    b_samples = [b for b, _ in pairs.values()]
    c_samples = [c for _, c in pairs.values()]
    b_pairs = [(s.layout_id, s.sample_key) for s in b_samples]
    c_pairs = [(s.layout_id, s.sample_key) for s in c_samples]
    coco_stats: dict[str, tuple[_CocoStat, dict, dict]] = {}
    b_cond: dict[str, Any] = {}
    c_cond: dict[str, Any] = {}
    if any(k.startswith("cond/") for k in keys):  # spatial runs: the per-image condition rows
        from gligen_eval.scoring.consistency import sample_rows

        b_cond, c_cond = sample_rows(base.path, base.manifest), sample_rows(cand.path, cand.manifest)
    rows = []
    for key in keys:
        rule = gate.rules.get(key) if gate else None
        conf = rule.confidence if rule else settings.confidence
        row = MetricRow(key=key, baseline=base.metric(key), candidate=cand.metric(key), diff=None, confidence=conf)
        if row.baseline is not None and row.candidate is not None:
            row.diff = row.candidate - row.baseline
        family = "box" if key in box_keys else "kp" if key in kp_keys else None
        if key in INSTANCE_KEYS and base.instances and cand.instances:
            fname = INSTANCE_KEYS[key]
            a = _instance_values(base, set(b_pairs), fname)
            b = _instance_values(cand, set(c_pairs), fname)
            a = {lid: a.get(lid, []) for lid in layout_ids}
            b = {lid: b.get(lid, []) for lid in layout_ids}
            row.baseline = stats.point_estimate(a, "pooled_mean")
            row.candidate = stats.point_estimate(b, "pooled_mean")
            row.diff, row.lo, row.hi = stats.paired_bootstrap_diff(a, b, "pooled_mean", n_boot=n_boot, alpha=1 - conf,
                                                                   seed=seed)  # fmt: skip
            row.method = f"paired bootstrap over layouts ({n_boot} draws), pooled over instances"
        elif key.startswith("cond/") and not key.startswith("cond/real/") and b_cond and c_cond:
            from gligen_eval.scoring.consistency import layout_values

            a = layout_values(b_cond, b_pairs, key, layout_ids)
            b = layout_values(c_cond, c_pairs, key, layout_ids)
            row.baseline = stats.point_estimate(a, "pooled_mean")
            row.candidate = stats.point_estimate(b, "pooled_mean")
            row.diff, row.lo, row.hi = stats.paired_bootstrap_diff(a, b, "pooled_mean", n_boot=n_boot, alpha=1 - conf,
                                                                   seed=seed)  # fmt: skip
            row.method = f"paired bootstrap over layouts ({n_boot} draws), pooled over images (cond.jsonl)"
        elif family is not None and _family_data(base, family) and _family_data(cand, family):
            if family not in coco_stats:
                iou_type = "bbox" if family == "box" else "keypoints"
                backend = base.cfg("scoring", "backend", "faster")
                st = _CocoStat(iou_type, backend)
                coco_stats[family] = (st, _coco_items(base, b_samples, family), _coco_items(cand, c_samples, family))
                st.register(coco_stats[family][1])
                st.register(coco_stats[family][2])
            st, a_items, b_items = coco_stats[family]
            name = key.split("/", 1)[1]
            family_ids = [lid for lid in layout_ids if lid in a_items or lid in b_items]
            a = {lid: a_items.get(lid, []) for lid in family_ids}
            b = {lid: b_items.get(lid, []) for lid in family_ids}
            fn = st.fn(name)
            row.baseline = fn(list(a.values()))
            row.candidate = fn(list(b.values()))
            row.diff, row.lo, row.hi = stats.paired_bootstrap_diff(a, b, fn, n_boot=n_boot_ap, alpha=1 - conf,
                                                                   seed=seed)  # fmt: skip
            row.method = (f"paired bootstrap over layouts ({n_boot_ap} draws), COCO "
                          + ("per-image matches re-accumulated per draw" if st.fast else "eval recomputed per draw"))
            for run, value, label in ((base, row.baseline, "baseline"), (cand, row.candidate, "candidate")):
                stored = run.metric(key)
                full = len(pairs) == len(run.samples)
                if full and stored is not None and stored >= 0 and math.isfinite(value) and abs(stored - value) > 1e-6:
                    row.note = f"recomputed {label} value {value:.4f} differs from its metrics.json ({stored:.4f})"
        else:
            row.method = "point values from metrics.json (no per-layout data)"
            row.lo = row.hi = None
        for attr in ("baseline", "candidate", "diff", "lo", "hi"):
            v = getattr(row, attr)
            if v is not None and not math.isfinite(v):
                setattr(row, attr, None)
        if key.startswith(("box/", "kp/")) and family is not None:
            for attr in ("baseline", "candidate"):  # COCO's -1 means "undefined"
                v = getattr(row, attr)
                if v is not None and v < 0:
                    setattr(row, attr, None)
                    row.diff = row.lo = row.hi = None
        if row.diff is None:
            row.lo = row.hi = None
        _judge(row, rule)
        rows.append(row)

    n_reg = sum(r.verdict == "regression" for r in rows)
    if gate is None:
        verdict, code = "pass", 0
        message = "no gate given: differences reported, nothing enforced"
    elif n_reg:
        verdict, code = "regression", 1
        message = f"{n_reg} metric(s) regressed: " + ", ".join(f"{r.key} ({r.note})" for r in rows if r.verdict == "regression")
    else:
        verdict, code = "pass", 0
        message = f"all {len(gate.rules)} gated metric(s) pass"
    return CompareResult(
        exit_code=code, verdict=verdict, message=message, baseline=_run_info(base), candidate=_run_info(cand),
        rows=rows, gate=gate.source if gate else None, notes=notes, config_diff=config_diff(base.config, cand.config),
        paired={"layouts": len(layout_ids), "samples": len(pairs), "baseline_samples": len(base.samples),
                "candidate_samples": len(cand.samples)},
        bootstrap={"unit": "layout", "n_boot": n_boot, "n_boot_ap": n_boot_ap, "seed": seed,
                   "implementation": "gligen_eval.scoring.stats.paired_bootstrap_diff"},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Markdown


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
