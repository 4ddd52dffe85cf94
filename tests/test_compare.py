"""Paired run-vs-run comparison and the regression gate."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import report_runs as rr
from gligen_eval.reporting import compare_runs
from gligen_eval.reporting.compare import load_gate, parse_gate
from gligen_eval.errors import InputError

GATE = """
metrics:
  box/AP:      {max_drop: 0.01, confidence: 0.95}
  box/mIoU:    {max_drop: 0.01}
  box/success: {max_drop: 0.02}
  fid:         {max_rise: 0.5}
bootstrap: {n_boot: 300, n_boot_ap: 60, seed: 3}
"""


@pytest.fixture(scope="module")
def runs(toy_runs) -> dict[str, Path]:
    return {
        "base": toy_runs("good"),
        # a model that ignores part of its grounding: the same layouts and seeds, boxes drawn off target
        "drifted": toy_runs("drifted"),
        # a model that matches the layouts as well but has a worse FID
        "blurry": toy_runs("blurry"),
        "one_seed": toy_runs("one_seed"),
    }


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("gate") / "gate.yaml"
    p.write_text(GATE)
    return p


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_a_run_passes_against_itself(runs, gate):
    res = compare_runs(runs["base"], runs["base"], gate)
    assert res.exit_code == 0 and res.verdict == "pass"
    for key in ("box/AP", "box/mIoU", "box/success"):
        row = res.row(key)
        assert row.diff == 0.0 and row.lo == 0.0 and row.hi == 0.0
        assert row.verdict == "pass"
    assert res.row("fid").verdict == "pass" and res.row("fid").lo is None  # no per-layout data: point value
    assert res.paired == {"layouts": 8, "samples": 16, "baseline_samples": 16, "candidate_samples": 16}
    assert "✅ PASS" in res.markdown


def test_a_degraded_candidate_fails_the_gate(runs, gate):
    base, cand = _metrics(runs["base"]), _metrics(runs["drifted"])
    res = compare_runs(runs["base"], runs["drifted"], gate)
    assert res.exit_code == 1 and res.verdict == "regression"
    ap, miou = res.row("box/AP"), res.row("box/mIoU")
    # the recomputed values are the runs' own numbers, and the difference is paired over the same layouts
    assert ap.baseline == pytest.approx(base["box/AP"], abs=1e-12)
    assert ap.candidate == pytest.approx(cand["box/AP"], abs=1e-12)
    assert miou.diff == pytest.approx(cand["box/mIoU"] - base["box/mIoU"], abs=1e-12)
    for row in (ap, miou):
        assert row.lo <= row.diff <= row.hi < -0.01
        assert row.verdict == "regression"
    assert res.row("fid").verdict == "pass"  # FID dropped by 0.2
    assert {r.key for r in res.regressions} >= {"box/AP", "box/mIoU"}
    md = res.markdown
    assert "❌ REGRESSION" in md and "| box/AP |" in md and "dropped by more than 0.01" in md
    assert "<details><summary>config differences</summary>" not in md or "drift" not in md
    data = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert data["verdict"] == "regression" and data["exit_code"] == 1
    assert data["bootstrap"] == {"unit": "layout", "n_boot": 300, "n_boot_ap": 60, "seed": 3,
                                 "implementation": "gligen_eval.scoring.stats.paired_bootstrap_diff"}  # fmt: skip


def test_point_metric_rise_is_judged_without_an_interval(runs, gate):
    res = compare_runs(runs["base"], runs["blurry"], gate)
    assert res.exit_code == 1
    fid = res.row("fid")
    assert fid.diff == pytest.approx(1.0) and fid.lo is None and fid.verdict == "regression"
    assert res.row("box/AP").verdict == "pass"  # the same images: no difference at all
    assert [r.key for r in res.regressions] == ["fid"]
    assert res.config_diff == {"model.name": ["toy-painter", "other-weights"]}


def test_no_gate_reports_without_enforcing(runs):
    res = compare_runs(runs["base"], runs["drifted"], None, n_boot=50)
    assert res.exit_code == 0 and res.gate is None
    assert all(r.verdict == "info" for r in res.rows)
    assert res.row("box/AP").hi < 0  # the difference is still reported with its interval
    assert "No gate file" in res.markdown


def test_unpaired_runs_are_refused_unless_allowed(runs, gate):
    res = compare_runs(runs["base"], runs["one_seed"], gate)
    assert res.exit_code == 2 and res.verdict == "unusable"
    assert "8 (layout, seed) pair(s) only in the baseline (e.g. L000/seed 1" in res.message
    assert "--allow-mismatch" in res.message and "CANNOT COMPARE" in res.markdown

    ok = compare_runs(runs["base"], runs["one_seed"], gate, allow_mismatch=True)
    assert ok.exit_code == 0
    assert ok.paired["samples"] == 8 and ok.paired["layouts"] == 8
    assert any("kept 8 shared pairs" in n for n in ok.notes)


def test_changed_layouts_are_named(runs, gate, tmp_path):
    layouts = rr.make_layouts()
    moved = list(layouts)
    first = moved[1]
    shifted = tuple(type(o)(phrase=o.phrase, box=(o.box[0] * 0.9, o.box[1], o.box[2] * 0.9, o.box[3]),
                            category=o.category) for o in first.objects)  # fmt: skip
    moved[1] = type(first)(layout_id=first.layout_id, caption=first.caption, objects=shifted, width=64, height=64)
    other = rr.make_run(tmp_path, "moved", layouts=moved, point_metrics={"fid": 20.0})
    res = compare_runs(runs["base"], other, gate)
    assert res.exit_code == 2
    assert "1 layout(s) with the same id but different content (e.g. L001)" in res.message
    assert "only in the" not in res.message  # L001 still pairs by (layout, seed); its content is what differs
    allowed = compare_runs(runs["base"], other, gate, allow_mismatch=True)
    assert allowed.exit_code in (0, 1) and allowed.paired["layouts"] == 7


def test_bad_gates_and_missing_metrics_are_unusable(runs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  box/AP: {max_dorp: 0.01}\n")
    res = compare_runs(runs["base"], runs["base"], bad)
    assert res.exit_code == 2 and "unknown rule key(s) max_dorp" in res.message and "[box/AP]" in res.message
    missing = tmp_path / "kid.yaml"
    missing.write_text("metrics:\n  kid: {max_rise: 0.001}\n  box/AP: {max_drop: 0.01}\n")
    res = compare_runs(runs["base"], runs["drifted"], missing)
    assert res.exit_code == 2
    assert "kid (missing in the baseline and candidate metrics.json)" in res.message
    res = compare_runs(runs["base"], tmp_path / "nope", missing)
    assert res.exit_code == 2 and "nope: not a directory" in res.message
    with pytest.raises(InputError, match="unknown gate key"):
        parse_gate({"metric": {}})
    with pytest.raises(InputError, match="sets none of"):
        parse_gate({"metrics": {"box/AP": {"confidence": 0.9}}})
    with pytest.raises(InputError, match="confidence must be a number in"):
        parse_gate({"metrics": {"box/AP": {"max_drop": 0.01, "confidence": 95}}})
    with pytest.raises(InputError, match="gate file not found"):
        load_gate(tmp_path / "absent.yaml")


def test_absolute_bounds_and_confidence(runs, tmp_path):
    cand = _metrics(runs["drifted"])
    g = parse_gate({"metrics": {"box/mIoU": {"min": cand["box/mIoU"] + 0.01}, "box/success": {"max": 2.0}},
                    "bootstrap": {"n_boot_ap": 10}})  # fmt: skip
    res = compare_runs(runs["base"], runs["drifted"], g, n_boot=50)
    assert res.row("box/mIoU").verdict == "regression" and "below" in res.row("box/mIoU").note
    assert res.row("box/success").verdict == "pass" and res.exit_code == 1
    # a wider interval at a higher confidence
    def at(confidence):
        rules = {"metrics": {"box/mIoU": {"max_drop": 0.5, "confidence": confidence}}, "bootstrap": {"n_boot_ap": 10}}
        return compare_runs(runs["base"], runs["drifted"], parse_gate(rules), n_boot=200)

    narrow, wide = at(0.5), at(0.99)
    n, w = narrow.row("box/mIoU"), wide.row("box/mIoU")
    assert n.diff == w.diff and (w.hi - w.lo) > (n.hi - n.lo) > 0
    assert narrow.exit_code == wide.exit_code == 0  # the drop is smaller than 0.5


def test_cli_exit_codes_and_json(runs, gate, tmp_path, capsys):
    from gligen_eval.cli import main

    assert main(["compare", str(runs["base"]), str(runs["base"]), "--gate", str(gate)]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs["base"]), str(runs["drifted"]), "--gate", str(gate), "--json",
                 "--out", str(tmp_path)]) == 1  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "regression" and not any(isinstance(v, float) and math.isnan(v)
                                                        for r in data["metrics"] for v in r.values())  # fmt: skip
    assert (tmp_path / "compare.md").read_text().startswith("### gligen-eval compare: ❌ REGRESSION")
    assert main(["compare", str(runs["base"]), str(runs["one_seed"]), "--gate", str(gate)]) == 2
    assert "only in the baseline" in capsys.readouterr().out


def test_default_gate_covers_the_shared_headline_metrics():
    from gligen_eval.reporting.compare import default_gate

    g = default_gate(["box/AP", "box/AP50", "box/mIoU", "fid", "clip/global"])
    assert sorted(g.rules) == ["box/AP", "box/mIoU", "fid"]
    assert g.rules["box/AP"].max_drop == 0.01 and g.rules["fid"].max_rise == 0.5
    assert default_gate(["box/AP"], max_drop=0.02).rules["box/AP"].max_drop == 0.02


def test_keypoint_ap_is_recomputed_from_the_pose_detections(tmp_path):
    layouts = rr.with_keypoints(rr.make_layouts(6, hostile=False))
    # the same pose model (one fingerprint) placing the keypoints exactly, and moved right by 0.04
    base = rr.make_run(tmp_path, "base", layouts=layouts, pose_shift=0.0)
    cand = rr.make_run(tmp_path, "cand", layouts=layouts, pose_shift=0.04)
    mb, mc = _metrics(base), _metrics(cand)
    assert mb["kp/AP"] == 1.0  # every labelled point exactly where the layout puts it
    assert mb["kp/AP"] > mc["kp/AP"] + 0.01
    gate = {"metrics": {"kp/AP": {"max_drop": 0.01}}, "bootstrap": {"n_boot": 40, "n_boot_ap": 20}}
    res = compare_runs(base, cand, parse_gate(gate))
    row = res.row("kp/AP")
    assert row.baseline == pytest.approx(mb["kp/AP"], abs=1e-9) and row.candidate == pytest.approx(mc["kp/AP"], abs=1e-9)
    assert row.note.startswith("dropped") and row.lo is not None and row.hi < 0
    assert res.exit_code == 1


def test_phrase_labelled_detections_are_scored_as_the_run_scored_them(tmp_path):
    """An open-vocabulary detector labels its boxes with the layout phrases; the scoring maps them to classes."""
    run = rr.make_run(tmp_path, "owl", layouts=rr.make_layouts(6, hostile=False), phrases=True)
    rows = [json.loads(line) for line in (run / "detections.jsonl").read_text().splitlines()]
    layouts = {json.loads(line)["layout_id"]: json.loads(line) for line in (run / "layouts.jsonl").read_text().splitlines()}
    samples = {json.loads(line)["sample_key"]: json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()}
    for row in rows:  # the stored labels are the phrases the detector was asked for
        phrases = {o["phrase"] for o in layouts[samples[row["sample_key"]]["layout_id"]]["objects"]}
        assert row["detections"] and all(d["label"] in phrases for d in row["detections"])
    res = compare_runs(run, run, parse_gate({"metrics": {"box/AP": {"max_drop": 0.01}},
                                             "bootstrap": {"n_boot": 20, "n_boot_ap": 10}}))  # fmt: skip
    row = res.row("box/AP")
    assert _metrics(run)["box/AP"] > 0.1
    assert row.baseline == pytest.approx(_metrics(run)["box/AP"], abs=1e-9) and row.note == ""
    # the report's AP-by-group plot scores them the same way
    from gligen_eval.reporting.plots import ap_by_layout_group
    from gligen_eval.reporting.rundata import RunData

    assert ap_by_layout_group(RunData(run), lambda lay: "all")["all"] == pytest.approx(_metrics(run)["box/AP"], abs=1e-9)


_toy_detect = rr.detect


def _tied_detect(img):
    """The toy detector with every score tied at 0.5 and one false box per color found."""
    from gligen_eval.records import Detection

    out = []
    for d in _toy_detect(img):
        out.append(Detection(box=d.box, label=d.label, score=0.5))
        x0, y0 = (d.box[0] + 0.37) % 0.6, (d.box[1] + 0.53) % 0.6
        out.append(Detection(box=(x0, y0, x0 + 0.3, y0 + 0.3), label=d.label, score=0.5))
    return out[::-1]


def test_compare_of_a_run_with_itself_reproduces_its_metrics_despite_tied_scores(tmp_path, monkeypatch):
    """Detections with equal scores are ordered by one documented rule wherever COCO results are built,
    so the AP that compare recomputes is the run's own, bit for bit, whatever the order of the samples."""
    monkeypatch.setattr(rr, "detect", _tied_detect)
    layouts = rr.make_layouts(8, hostile=False)[::-1]  # samples.jsonl order is not the sorted (layout, seed) order
    run = rr.make_run(tmp_path, "tied", layouts=layouts, seeds=(0, 1, 2))
    stored = _metrics(run)
    assert 0.05 < stored["box/AP"] < 0.95
    res = compare_runs(run, run, parse_gate({"metrics": {"box/AP": {"max_drop": 0.01}},
                                             "bootstrap": {"n_boot": 10, "n_boot_ap": 5}}))  # fmt: skip
    for key in ("box/AP", "box/AP50", "box/AP75", "box/AR100"):
        row = res.row(key)
        assert row.baseline == stored[key] and row.candidate == stored[key], key
        assert row.note == ""
    # the same detections in another order (another sample order, detections reversed) give the same AP
    from gligen_eval.scoring import coco
    from gligen_eval.reporting.rundata import RunData

    rd = RunData(run)
    items = [(s.sample_key, rd.layouts[s.layout_id], s.width, s.height, rd.detections[s.sample_key]) for s in rd.samples]
    shuffled = [(k, lay, w, h, list(d)[::-1]) for k, lay, w, h, d in items[::-1]]
    a = coco.evaluate_coco(*coco.build_eval_inputs(items))
    b = coco.evaluate_coco(*coco.build_eval_inputs(shuffled))
    assert a == b and a["AP"] == stored["box/AP"]



SMOKE_LVIS = Path(__file__).resolve().parents[1] / "benchmarks" / "smoke-lvis.yaml"


def _pixel_key(path: Path) -> str:
    import hashlib

    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()[:20]


def _known_detections(lay) -> list:
    """Found objects (every third missed, boxes shifted more and more, scores falling), a false positive of
    one of the image's negative categories (counted by LVIS) and one of a category the image neither shows nor
    rules out (ignored by LVIS, counted by COCO)."""
    from gligen_eval.records import Detection

    out = []
    for j, o in enumerate(lay.objects):
        if j % 3 == 2:
            continue
        x0, y0, x1, y1 = o.box
        dx = 0.05 * (j % 4) * (x1 - x0)
        out.append(Detection((x0 + dx, y0, min(1.0, x1 + dx), y1), o.category, 0.9 - 0.07 * j))
    named = {o.category_id for o in lay.objects}
    neg = [c for c in lay.neg_category_ids if c in _CATEGORY_NAMES]
    if neg:
        out.append(Detection((0.0, 0.0, 0.3, 0.3), _CATEGORY_NAMES[neg[0]], 0.95))
    free = [c for c in sorted(_CATEGORY_NAMES) if c not in named and c not in lay.neg_category_ids
            and c not in lay.not_exhaustive_category_ids]  # fmt: skip
    out.append(Detection((0.5, 0.5, 0.9, 0.9), _CATEGORY_NAMES[free[0]], 0.99))
    return out


_CATEGORY_NAMES: dict[int, str] = {}


class RunDirDetector:
    """Known detections (:func:`_known_detections`) of the generated images of the run directory ``weights``,
    looked up by the image's pixels: a detector whose output the test knows, run by the real scoring."""

    def __init__(self, weights: str, device: str = "cpu") -> None:
        from gligen_eval import store
        from gligen_eval.records import stable_hash

        rd = store.RunDir(weights)
        by_id = {lay.layout_id: lay for lay in rd.layouts()}
        _CATEGORY_NAMES.update({o.category_id: o.category for lay in by_id.values() for o in lay.objects})
        self.table = {_pixel_key(rd.root / s.image): [d.to_dict() for d in _known_detections(by_id[s.layout_id])]
                      for s in rd.samples()}  # fmt: skip
        self.name = "known-lvis-detections"
        self._fp = stable_hash(self.table)

    def fingerprint(self) -> str:
        return self._fp

    def detect(self, images: list) -> list:
        import hashlib

        import numpy as np

        from gligen_eval.records import Detection

        keys = [hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()[:20] for im in images]
        return [[Detection.from_dict(d) for d in self.table[k]] for k in keys]


def test_lvis_run_compared_with_itself_reproduces_its_lvis_ap(tmp_path):
    """An LVIS run's layouts carry their negative / not-exhaustive category ids and category frequencies, so
    compare recomputes its LVIS-style box AP (APr/APc/APf included) through scoring's own evaluation, with
    paired intervals, and gets the run's own metrics.json numbers exactly."""
    from gligen_eval import runner, store
    from gligen_eval.config import load_config
    from gligen_eval.scoring import coco

    out = tmp_path / "lvis"
    cfg = load_config(SMOKE_LVIS, [f"out={out}", "sampler.steps=1", "scoring.bootstrap=0",
                                   f"detector.kind={__name__}:RunDirDetector", f"detector.weights={out}"])  # fmt: skip
    run = runner.run(cfg, progress=False)
    stored = _metrics(run)
    rd = store.RunDir(run)
    assert all(lay.lvis_style for lay in rd.layouts())
    assert 0.1 < stored["box/AP"] < 0.9 and "box/APr" in stored and "box/AR300" in stored
    # the false positives of categories an image neither shows nor rules out count in COCO AP only
    by_id = {lay.layout_id: lay for lay in rd.layouts()}
    dets = {key: d for (key, _), d in rd.detections().items()}
    plain = [(s.sample_key, dataclasses.replace(by_id[s.layout_id], neg_category_ids=None, not_exhaustive_category_ids=None),
              s.width, s.height, dets[s.sample_key]) for s in rd.samples()]  # fmt: skip
    assert coco.evaluate_coco(*coco.build_eval_inputs(plain))["AP"] < stored["box/AP"] - 0.01

    res = compare_runs(run, run, parse_gate({"metrics": {"box/AP": {"max_drop": 0.01}},
                                             "bootstrap": {"n_boot": 20, "n_boot_ap": 8}}))  # fmt: skip
    assert res.exit_code == 0, res.message
    keys = [k for k in coco.metric_keys("bbox", lvis_style=True) if stored[f"box/{k}"] >= 0]
    assert {"AP", "AR300", "APr", "APc", "APf"} <= set(keys)
    for key in (f"box/{k}" for k in keys):
        row = res.row(key)
        assert row.baseline == stored[key] and row.candidate == stored[key], key
        assert row.diff == 0.0 and row.lo == 0.0 and row.hi == 0.0 and row.note == "", key
        assert row.method.startswith("paired bootstrap over layouts"), key
    # a run whose layouts.jsonl predates the layouts' LVIS ids keeps its LVIS AP as point values
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    rows = [json.loads(line) for line in (old / "layouts.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("neg_category_ids"), r.pop("not_exhaustive_category_ids")
    (old / "layouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    row = compare_runs(old, old, parse_gate({"metrics": {"box/AP": {"max_drop": 0.01}}})).row("box/AP")
    assert row.baseline == stored["box/AP"] and row.lo is None and row.method.startswith("point values")
