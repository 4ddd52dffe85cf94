"""Error-analysis plots in the report: drawn for runs scored with ``scoring.error_analysis: true``,
skipped with a reason otherwise."""

from __future__ import annotations

import json

import pytest

import report_runs as rr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("err_runs")
    on = {"error_analysis": True}
    lays = rr.make_layouts(5)
    good = rr.make_run(root, "good", layouts=lays, scoring=on, with_ci=False)
    drifted = rr.make_run(root, "drifted", layouts=lays, drift=0.08, scoring=on, with_ci=False)
    plain = rr.make_run(root, "plain", layouts=lays, with_ci=False)
    return good, drifted, plain


def test_error_plots_are_written_for_error_analysis_runs(runs, tmp_path):
    from gligen_eval.reporting import build_report

    good, drifted, _ = runs
    m_good = json.loads((good / "metrics.json").read_text())
    m_drift = json.loads((drifted / "metrics.json").read_text())
    # the drifted painter's boxes are poorly placed: a localisation error the good one has less of
    assert m_drift["box/tide/loc"] > m_good["box/tide/loc"]
    assert m_drift["box/AP_iou_auc"] < m_good["box/AP_iou_auc"]
    b = json.loads((drifted / "breakdowns.json").read_text())
    assert set(b["box/confusion"]) >= {"labels", "rows", "cols", "matrix"}
    rows = [json.loads(line) for line in (drifted / "instances.jsonl").read_text().splitlines()]
    assert {r["error_type"] for r in rows} <= {"hit", "loc", "cls", "both", "missed"} and "loc" in {r["error_type"] for r in rows}

    files = build_report([good, drifted], tmp_path / "report")
    for name in ("tide_errors", "ap_over_iou", "confusion"):
        for ext in ("png", "svg"):
            f = files[f"plots/{name}.{ext}"]
            assert f.is_file() and f.stat().st_size > 1000, name
    index = (tmp_path / "report" / "index.md").read_text()
    assert "tide_errors" in index


def test_error_plots_are_skipped_without_error_analysis(runs):
    from gligen_eval.reporting import plots
    from gligen_eval.reporting.rundata import RunData

    _, _, plain = runs
    run = [RunData(plain)]
    for name in ("tide_errors", "ap_over_iou", "confusion"):
        with pytest.raises(plots.Skip, match="error_analysis: true"):
            plots.PLOTS[name](run)


def test_worst_categories_are_the_least_often_seen_as_themselves():
    from gligen_eval.reporting.plots_errors import worst_categories

    cm = {"labels": ["dog", "cat", "car", "bus"],
          "matrix": [[3, 1, 0, 0, 0], [0, 1, 0, 0, 3], [0, 0, 0, 0, 0], [0, 0, 0, 2, 0], [0, 0, 1, 0, 0]]}  # fmt: skip
    assert worst_categories(cm, 2) == [1, 0]  # cat 1/4 seen as cat, dog 3/4; car has no objects
    assert worst_categories(cm, 10) == [1, 0, 3]
