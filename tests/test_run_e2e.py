"""The main job end to end on the bundled sample: CLI, run directory contract, cache, resume."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from run_cli import cli, kill_run_after_rows
from gligen_eval.cli import main

SMALL = ["--set", "layouts.limit=6", "--set", "sampler.steps=3", "--set", "sampler.batch_size=4", "--no-progress"]
BOX_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    assert main(["run", "--out", str(out), *SMALL]) == 0
    return out


def test_run_directory_contract(demo_run, capsys):
    out = demo_run
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("schema_version", "config", "config_hash", "versions", "git", "models", "seed_policy", "layouts"):
        assert key in manifest, key
    assert manifest["random_weights"] is True
    assert manifest["models"]["generator"]["unet"]["fingerprint"]
    assert manifest["models"]["detector"]["fingerprint"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [k for k in metrics if k.startswith("box/A")][:12] == [f"box/{k}" for k in BOX_KEYS]
    for k in ("box/mIoU", "box/success"):
        assert 0.0 <= metrics[k] <= 1.0
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == metrics["n_samples"] == 6
    for s in samples:
        assert (out / s["image"]).is_file()
        assert s["image"] == f"images/{s['sample_key']}.png"
    instances = _lines(out / "instances.jsonl")
    assert len(instances) == metrics["n_instances"] > 0
    assert all(r["reason"] and r["phrase"] in r["reason"] for r in instances)
    assert {r["layout_id"] for r in instances} <= {s["layout_id"] for s in samples}
    assert "random weights" in (out / "report.md").read_text()


def test_rerun_generates_nothing_and_keeps_metrics(demo_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()}
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert main(["run", "--out", str(demo_run), *SMALL]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()}
    assert after == before
    assert json.loads((demo_run / "metrics.json").read_text()) == metrics
    assert len(_lines(demo_run / "samples.jsonl")) == 6


def test_corrupt_cached_image_is_regenerated_identically(demo_run, capsys):
    img = sorted((demo_run / "images").iterdir())[0]
    good = img.read_bytes()
    img.write_bytes(good[: len(good) // 3])
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert main(["run", "--out", str(demo_run), *SMALL]) == 0
    assert img.read_bytes() == good
    assert json.loads((demo_run / "metrics.json").read_text()) == metrics
    assert len(_lines(demo_run / "samples.jsonl")) == 6  # the regenerated batch's rows are not kept twice


def test_rank_parts_of_an_interrupted_distributed_run_are_folded(demo_run, capsys):
    samples = demo_run / "samples.jsonl"
    rows = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(rows[:2]))
    (demo_run / "samples.rank1.jsonl").write_text("".join(rows[2:]))
    before = {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()}
    assert main(["run", "--out", str(demo_run), *SMALL]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()} == before
    assert samples.read_text().splitlines(keepends=True) == rows
    assert not (demo_run / "samples.rank1.jsonl").exists()


def test_cli_prints_random_weight_warning_and_real_model_hint(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--set", "layouts.limit=2", "--set", "sampler.steps=2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "random weights" in text
    assert "model.name=masterful/gligen-1-4-generation-text-box" in text


def test_run_json_output_is_one_object(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--json", "--set", "layouts.limit=2", "--set", "sampler.steps=2",
                 "--no-progress"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"]["n_samples"] == 2


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler:\n  stepz: 3\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml" in err and "sampler.stepz" in err
    assert main(["run", "--out", str(tmp_path / "x"), "--set", "model.name=nobody/no-such-gligen-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nobody/no-such-gligen-model" in err


@pytest.mark.parametrize("setting", [["--set", "scoring.real_images=true"],
                                     ["--set", "fid.enabled=true", "--set", "fid.feature=tiny"]])
def test_missing_real_images_fail_before_generation(tmp_path, capsys, setting):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), *SMALL, *setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[layout " in err and "images_dir" in err
    assert not (out / "images").exists() and not (out / "manifest.json").exists()


def test_unreadable_manifest_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    assert main(["run", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "manifest.json" in err


def test_changed_settings_regenerate_only_what_they_affect(tmp_path, capsys):
    out = tmp_path / "grow"
    base = ["run", "--out", str(out), "--set", "sampler.steps=2", "--no-progress"]
    assert main([*base, "--set", "layouts.limit=3"]) == 0
    first = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert main([*base, "--set", "layouts.limit=5"]) == 0  # two more layouts: the first three are reused
    now = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert len(now) == 5 and all(now[k] == v for k, v in first.items())
    assert len(_lines(out / "samples.jsonl")) == 5
    assert json.loads((out / "metrics.json").read_text())["n_samples"] == 5
    assert main([*base, "--set", "layouts.limit=5", "--set", "sampler.guidance_scale=3.0"]) == 0  # affects all
    again = {p.name for p in (out / "images").iterdir()}
    assert len(again) == 10 and len(_lines(out / "samples.jsonl")) == 5


def test_rescoring_in_place_reuses_images(demo_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()}
    old = json.loads((demo_run / "metrics.json").read_text())
    assert main(["run", "--out", str(demo_run), *SMALL, "--set", "scoring.success_iou=0.3"]) == 0
    new = json.loads((demo_run / "metrics.json").read_text())
    assert {p.name: p.stat().st_mtime_ns for p in (demo_run / "images").iterdir()} == before
    assert new["box/AP"] == old["box/AP"] and new["box/success"] >= old["box/success"]
    manifest = json.loads((demo_run / "manifest.json").read_text())
    assert manifest["config"]["scoring"]["success_iou"] == 0.3
    assert main(["run", "--out", str(demo_run), *SMALL]) == 0  # back to the fixture's settings


def test_interrupted_rescoring_leaves_no_stale_metrics(demo_run, capsys, monkeypatch):
    import gligen_eval.scoring.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pipeline, "score_run", interrupted)
        assert main(["run", "--out", str(demo_run), *SMALL, "--set", "scoring.success_iou=0.3"]) == 130
    manifest = json.loads((demo_run / "manifest.json").read_text())
    assert manifest["config"]["scoring"]["success_iou"] == 0.3
    assert not (demo_run / "metrics.json").exists()  # the old metrics were scored with other settings
    assert main(["run", "--out", str(demo_run), *SMALL]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--out", str(demo_run), *SMALL, "--resume"]) == 0  # back to the fixture's settings
    assert json.loads((demo_run / "manifest.json").read_text())["config"]["scoring"]["success_iou"] == 0.5


@pytest.mark.slow
def test_kill_minus_9_then_resume_matches_uninterrupted(tmp_path):
    args = ["--set", "layouts.limit=12", "--set", "sampler.steps=6", "--set", "sampler.batch_size=2",
            "--set", "detector.batch_size=2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(cli("run", "--out", str(full), *args), check=True, env=env, capture_output=True)

    cut = tmp_path / "cut"
    n_before = len(kill_run_after_rows(cut, args, env))
    assert not (cut / "metrics.json").exists()
    assert 2 <= n_before < 12

    res = subprocess.run(cli("run", "--out", str(cut), *args), env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "--resume" in res.stderr
    subprocess.run(cli("run", "--out", str(cut), "--resume", *args), check=True, env=env, capture_output=True)
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert a == b
    assert len(_lines(cut / "samples.jsonl")) == 12
    full_imgs = {p.name: p.read_bytes() for p in (full / "images").iterdir()}
    cut_imgs = {p.name: p.read_bytes() for p in (cut / "images").iterdir() if p.suffix == ".png"}
    assert full_imgs == cut_imgs


def test_tau_sweep_runs_each_point_over_the_same_layouts(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["run", "--out", str(out), "--set", "layouts.limit=3", "--set", "sampler.steps=4",
                 "--set", "sweep.tau=[0.0, 0.5, 1.0]", "--no-progress"]) == 0  # fmt: skip
    index = json.loads((out / "sweep.json").read_text())
    assert [p["tau"] for p in index["points"]] == [0.0, 0.5, 1.0]
    runs = [out / p["run"] for p in index["points"]]
    alphas = [json.loads((r / "manifest.json").read_text())["config"]["sampler"]["alpha"] for r in runs]
    assert alphas == [[0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]]
    pairs = [sorted((s["layout_id"], s["seed"]) for s in _lines(r / "samples.jsonl")) for r in runs]
    assert pairs[0] == pairs[1] == pairs[2] and len(pairs[0]) == 3
    # grounding switched off (τ=0) and on (τ=1) give different images from the same noise
    img = lambda r: {s["layout_id"]: (r / s["image"]).read_bytes() for s in _lines(r / "samples.jsonl")}  # noqa: E731
    assert img(runs[0]) != img(runs[2])
    assert "tau=0.5" in capsys.readouterr().out
    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    assert (report / "plots" / "tradeoff.png").exists()


def test_missing_scoring_weights_fail_before_generation(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "--out", str(out), "--set", "layouts.limit=2", "--set", "sampler.steps=2",
                 "--set", f"detector.weights={tmp_path / 'absent.pt'}", "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "absent.pt" in err
    assert not (out / "samples.jsonl").exists() and not (out / "images").exists()


def test_report_names_the_modality_the_run_used(demo_run, tmp_path, capsys):
    from gligen_eval.reporting.rundata import RunData

    # the sample's persons carry keypoints, but the demo model is a text+box model
    assert RunData(demo_run).modality == "text-box"
