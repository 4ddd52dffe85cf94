"""A keypoint smoke run, end to end through ``gligen-eval run`` and ``gligen-eval report``: the
per-keypoint breakdown that scoring writes is the one the report plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gligen_eval.cli import main
from gligen_eval.records import COCO_KEYPOINT_NAMES

SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "smoke-keypoint.yaml"
SMALL = ["--set", "layouts.limit=2", "--set", "sampler.steps=1", "--set", "sampler.batch_size=2",
         "--set", "scoring.bootstrap=0", "--no-progress"]  # fmt: skip


@pytest.mark.slow
def test_keypoint_smoke_run_gets_the_per_keypoint_plot(tmp_path, capsys):
    run = tmp_path / "kp"
    assert main(["run", str(SMOKE), "--out", str(run), *SMALL]) == 0
    per_kp = json.loads((run / "breakdowns.json").read_text())["kp/AP_per_keypoint"]
    assert per_kp and set(per_kp) <= set(COCO_KEYPOINT_NAMES)
    assert all(0.0 <= v["similarity"] <= 1.0 and v["n"] > 0 for v in per_kp.values())
    capsys.readouterr()

    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    plot = tmp_path / "report" / "plots" / "kp_per_keypoint.svg"
    assert plot.is_file() and (tmp_path / "report" / "plots" / "kp_per_keypoint.png").stat().st_size > 200
    svg = plot.read_text()
    assert all(name in svg for name in per_kp)  # one bar label per keypoint type the run scored
    index = (tmp_path / "report" / "index.md").read_text()
    assert "- kp_per_keypoint: [PNG](plots/kp_per_keypoint.png)" in index
