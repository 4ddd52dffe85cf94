"""The shipped error-analysis and compositional smoke config end to end: every box/tide/*,
box/AP_iou_auc and comp/* key reaches metrics.json, the leaderboard, the plots and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gligen_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("box/tide/cls", "box/tide/loc", "box/tide/both", "box/tide/dupl", "box/tide/bkg", "box/tide/miss",
        "box/AP_iou_auc", "comp/count_acc", "comp/count_f1", "comp/relation_acc", "comp/color_acc_hsv",
        "comp/color_acc_clip", "comp/texture_acc_clip")  # fmt: skip


@pytest.mark.slow
def test_smoke_analysis_run_has_every_key_in_metrics_report_and_compare(tmp_path, monkeypatch):
    from gligen_eval.reporting import metricinfo as mi
    from gligen_eval.reporting.compare import compare_runs

    monkeypatch.chdir(ROOT)  # the config names its layouts relative to the repository
    out = tmp_path / "analysis"
    assert main(["run", "benchmarks/smoke-analysis.yaml", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(KEYS) <= set(metrics)
    assert all(not mi.higher_is_better(k) for k in KEYS if k.startswith("box/tide/"))
    breakdowns = json.loads((out / "breakdowns.json").read_text())
    confusion = breakdowns["box/confusion"]
    assert len(confusion["matrix"]) == len(confusion["rows"]) and confusion["cols"][-1] == "missed"
    rows = [json.loads(x) for x in (out / "comp.jsonl").read_text().splitlines()]
    textures = [t for r in rows for t in r.get("textures", ())]
    named = 9  # striped, wooden, metal, furry, checkered, plaid, dotted, knitted, leather: once per seed
    assert len(textures) == named * (metrics["n_samples"] // metrics["n_layouts"])
    instances = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
    assert {i["error_type"] for i in instances} <= {"hit", "loc", "cls", "both", "missed"}

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert all(k in board for k in ("box/tide/miss", "box/AP_iou_auc", "comp/texture_acc_clip"))
    for plot in ("tide_errors", "ap_over_iou", "confusion"):
        assert (tmp_path / "report" / "plots" / f"{plot}.png").is_file(), plot
    res = compare_runs(out, out)
    for key in ("comp/texture_acc_clip", "comp/relation_acc"):
        row = res.row(key)
        assert "comp.jsonl" in row.method and row.diff == row.lo == row.hi == 0.0, key
    assert set(KEYS) <= {r.key for r in res.rows}
