"""Paired run-vs-run comparison and the regression gate (``gligen-eval compare``).

Both runs must hold the same layouts (same ids and content) and the same seeds: samples are
paired by ``(layout_id, seed)``. For every metric the difference ``candidate - baseline`` gets a
paired bootstrap interval, resampling **layouts** with the same draws for both runs
(:func:`gligen_eval.scoring.stats.paired_bootstrap_diff`); how each key is recomputed on a draw is
decided in one place, :func:`~gligen_eval.reporting.paired.recompute_kind`:

* ``box/mIoU`` and ``box/success`` are pooled means over the instances of the drawn layouts;
* the COCO keys (``box/AP``, ``box/AP50``, ..., ``kp/AP``, ...) are recomputed on every draw from
  the stored detections and the layout boxes, as the run scored them (``box/``: the detector's
  detections, phrase labels mapped to the objects' classes, only the objects of a closed-set
  detector's recorded classes, in the canonical order of :func:`~gligen_eval.scoring.coco.build_eval_inputs`
  so that a run compared with itself reproduces its ``metrics.json``; ``kp/``: the pose model's detections on
  the layouts with keypoints); duplicated layouts become separate images. Each run's images are
  matched once and a draw re-accumulates the matches of its images, which gives the numbers of
  evaluating the drawn dataset (:mod:`gligen_eval.scoring.matches`). LVIS layouts carry their
  negative / not-exhaustive category ids and category frequencies, so their ``box/`` AP (with
  ``APr APc APf``) is recomputed LVIS-style through the same evaluation as scoring;
* the condition-consistency keys (``cond/*`` of spatial runs) are pooled means over the images of
  the drawn layouts, from the runs' ``cond.jsonl`` rows (the real-image ceiling ``cond/real/*`` is
  compared as point values), and the pooled compositional keys (``comp/count_acc``,
  ``comp/relation_acc``, the colour and texture checks, ``mig/ISR``, ``mig/mIoU``) over the objects of
  the drawn layouts, from ``comp.jsonl`` -- each scorer reads its own rows back
  (:meth:`~gligen_eval.scoring.protocol.Scorer.sample_values`);
* metrics that are not sums over layouts (``fid``, ``kid``, ``clip/*``) are compared as point
  values, without an interval.

The gate file (YAML, :mod:`gligen_eval.reporting.gate`) sets a rule per metric; a metric
regresses when the whole interval of its difference lies beyond the allowed change, so noise
alone does not fail a gate. Values are in the metric's own units (AP is a fraction: one AP point
is 0.01). Exit codes: 0 pass (or no gate), 1 regression, 2 unusable input. The Markdown report is
:mod:`gligen_eval.reporting.compare_md`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gligen_eval.errors import GligenEvalError
from gligen_eval.reporting import metricinfo as mi
from gligen_eval.reporting.gate import (
    BOOTSTRAP_KEYS, GATE_KEYS, RULE_KEYS, Gate, Rule, default_gate, judge, load_gate, parse_gate,
)  # fmt: skip
from gligen_eval.reporting.paired import UnusableInput, family_data, pooled_values, recompute_kind, sample_pairs
from gligen_eval.reporting.paired import CocoStat as _CocoStat  # (the name benchmarks and tests know)
from gligen_eval.reporting.rundata import COUNT_KEYS, RunData

__all__ = [
    "BOOTSTRAP_KEYS", "GATE_KEYS", "RULE_KEYS", "CompareResult", "Gate", "MetricRow", "Rule",
    "UnusableInput", "compare_runs", "config_diff", "default_gate", "load_gate", "parse_gate", "recompute_kind",
    "render_markdown",
]  # fmt: skip


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


def render_markdown(res: CompareResult) -> str:
    """The comparison as Markdown (:func:`gligen_eval.reporting.compare_md.render_markdown`)."""
    from gligen_eval.reporting.compare_md import render_markdown as render

    return render(res)



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


@dataclass
class _Paired:
    """The paired samples of two runs and the per-draw data the rows share."""

    base: RunData
    cand: RunData
    pairs: dict
    layout_ids: list[str]
    n_boot: int
    n_boot_ap: int
    seed: int
    pooled: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    coco_stats: dict[str, tuple[_CocoStat, dict, dict]] = field(default_factory=dict)

    @property
    def b_samples(self) -> list:
        return [b for b, _ in self.pairs.values()]

    @property
    def c_samples(self) -> list:
        return [c for _, c in self.pairs.values()]

    def pooled_values(self, key: str) -> tuple[Any, Any]:
        """Per layout, the baseline's and the candidate's values behind a pooled key (``None`` where absent)."""
        if key not in self.pooled:
            self.pooled[key] = tuple(
                pooled_values(run, key, [(s.layout_id, s.sample_key) for s in samples], self.layout_ids)
                for run, samples in ((self.base, self.b_samples), (self.cand, self.c_samples)))  # fmt: skip
        return self.pooled[key]

    def has_data(self, kind: str | None, key: str) -> bool:
        """Whether both runs hold the per-layout data to recompute ``key`` (of ``recompute_kind`` ``kind``)."""
        if kind == "pooled":
            return all(v is not None for v in self.pooled_values(key))
        if kind in ("box", "kp"):
            return family_data(self.base, kind) and family_data(self.cand, kind)
        return False


def _check_gate_metrics(gate: Gate, paired: _Paired, b_keys: set[str], c_keys: set[str]) -> None:
    missing = []
    for key in gate.rules:
        if key in b_keys and key in c_keys:
            continue
        if recompute_kind(key) == "pooled" and paired.has_data("pooled", key):
            continue
        where = [name for name, have in (("baseline", key in b_keys), ("candidate", key in c_keys)) if not have]
        missing.append(f"{key} (missing in the {' and '.join(where)} metrics.json)")
    if missing:
        raise UnusableInput("gate metric(s) not available: " + "; ".join(missing) +
                            f". The baseline has: {', '.join(sorted(b_keys)) or 'none'}")  # fmt: skip


def _compare(baseline: Path, candidate: Path, gate_arg: Path | Gate | None, allow_mismatch: bool,
             n_boot: int | None, seed: int | None) -> CompareResult:  # fmt: skip
    gate = gate_arg if isinstance(gate_arg, Gate) else (load_gate(gate_arg) if gate_arg is not None else None)
    settings = gate or Gate()
    n_boot = n_boot or settings.n_boot
    seed = settings.seed if seed is None else seed
    base, cand = RunData(baseline), RunData(candidate)
    pairs, notes = sample_pairs(base, cand, allow_mismatch)
    layout_ids = sorted({lid for lid, _ in pairs})

    counts = (*COUNT_KEYS, "n_instances_unmapped")
    b_keys = set(mi.metric_keys(base.metrics, skip=counts))
    c_keys = set(mi.metric_keys(cand.metrics, skip=counts))
    paired = _Paired(base, cand, pairs, layout_ids, n_boot, min(settings.n_boot_ap, n_boot), seed)
    if gate is not None:
        _check_gate_metrics(gate, paired, b_keys, c_keys)
    keys = mi.order_metrics((b_keys & c_keys) | (set(gate.rules) if gate else set()))
    rows = []
    for key in keys:
        rule = gate.rules.get(key) if gate else None
        row = _metric_row(paired, key, rule.confidence if rule else settings.confidence)
        judge(row, rule)
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
        bootstrap={"unit": "layout", "n_boot": n_boot, "n_boot_ap": paired.n_boot_ap, "seed": seed,
                   "implementation": "gligen_eval.scoring.stats.paired_bootstrap_diff"},
    )  # fmt: skip


def _metric_row(p: _Paired, key: str, conf: float) -> MetricRow:
    """The row of one metric: paired values and interval when the key is recomputed per layout, else
    the point values of the two metrics.json."""
    from gligen_eval.scoring import stats

    base, cand = p.base, p.cand
    row = MetricRow(key=key, baseline=base.metric(key), candidate=cand.metric(key), diff=None, confidence=conf)
    if row.baseline is not None and row.candidate is not None:
        row.diff = row.candidate - row.baseline
    kind = recompute_kind(key)
    if not p.has_data(kind, key):
        row.method = "point values from metrics.json (no per-layout data)"
        row.lo = row.hi = None
    elif kind == "pooled":
        a, b = p.pooled_values(key)
        row.baseline = stats.point_estimate(a, "pooled_mean")
        row.candidate = stats.point_estimate(b, "pooled_mean")
        row.diff, row.lo, row.hi = stats.paired_bootstrap_diff(a, b, "pooled_mean", n_boot=p.n_boot, alpha=1 - conf,
                                                               seed=p.seed)  # fmt: skip
        from gligen_eval.scoring.protocol import key_owner

        row.method = f"paired bootstrap over layouts ({p.n_boot} draws), pooled over {key_owner(key).rows or 'rows'}"
    else:
        _coco_row(p, row, kind, conf)  # type: ignore[arg-type]
    for attr in ("baseline", "candidate", "diff", "lo", "hi"):
        v = getattr(row, attr)
        if v is not None and not math.isfinite(v):
            setattr(row, attr, None)
    if kind in ("box", "kp"):
        for attr in ("baseline", "candidate"):  # COCO's -1 means "undefined"
            v = getattr(row, attr)
            if v is not None and v < 0:
                setattr(row, attr, None)
                row.diff = row.lo = row.hi = None
    if row.diff is None:
        row.lo = row.hi = None
    return row


def _coco_row(p: _Paired, row: MetricRow, family: str, conf: float) -> None:
    from gligen_eval.reporting.paired import coco_stat
    from gligen_eval.scoring import stats

    if family not in p.coco_stats:
        p.coco_stats[family] = coco_stat(family, p.base, p.cand, p.b_samples, p.c_samples)
    st, a_items, b_items = p.coco_stats[family]
    family_ids = [lid for lid in p.layout_ids if lid in a_items or lid in b_items]
    a = {lid: a_items.get(lid, []) for lid in family_ids}
    b = {lid: b_items.get(lid, []) for lid in family_ids}
    fn = st.fn(row.key.split("/", 1)[1])
    row.baseline = fn(list(a.values()))
    row.candidate = fn(list(b.values()))
    row.diff, row.lo, row.hi = stats.paired_bootstrap_diff(a, b, fn, n_boot=p.n_boot_ap, alpha=1 - conf,
                                                           seed=p.seed)  # fmt: skip
    row.method = (f"paired bootstrap over layouts ({p.n_boot_ap} draws), COCO "
                  + ("per-image matches re-accumulated per draw" if st.fast else "eval recomputed per draw"))
    for run, value, label in ((p.base, row.baseline, "baseline"), (p.cand, row.candidate, "candidate")):
        stored = run.metric(row.key)
        full = len(p.pairs) == len(run.samples)
        if full and stored is not None and stored >= 0 and math.isfinite(value) and abs(stored - value) > 1e-6:
            row.note = f"recomputed {label} value {value:.4f} differs from its metrics.json ({stored:.4f})"
