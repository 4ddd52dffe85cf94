"""Reports over finished runs: leaderboard files, plots, gallery, index."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pytest

import report_runs as rr
from gligen_eval.errors import InputError
from gligen_eval.records import COCO_KEYPOINT_NAMES


@pytest.fixture(scope="module")
def two_runs(toy_runs) -> tuple[Path, Path]:
    return toy_runs("good", "drifted")


@pytest.fixture(scope="module")
def report(two_runs, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    from gligen_eval.reporting import build_report

    out = tmp_path_factory.mktemp("report")
    return out, build_report(list(two_runs), out)


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_report_writes_every_file(report):
    out, files = report
    for name in ("index.html", "index.md", "leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html",
                 "gallery/good.html", "gallery/drifted.html", "plots/by_size.png", "plots/by_size.svg",
                 "plots/per_category_ap.png", "plots/by_num_objects.svg", "plots/fid_clip.png"):  # fmt: skip
        assert name in files, name
        assert files[name].is_file() and files[name].stat().st_size > 200, name
        assert files[name] == out / name
    assert files["plots/by_size.png"].read_bytes()[:4] == b"\x89PNG"
    assert files["plots/by_size.svg"].read_text().lstrip().startswith("<?xml")


def test_csv_and_json_hold_the_exact_metrics(two_runs, report):
    import pandas as pd

    out, _ = report
    df = pd.read_csv(out / "leaderboard.csv", dtype={c: str for c in ("git", "config_hash", "generator_fp")}).set_index("run")
    data = json.loads((out / "leaderboard.json").read_text())
    by_run = {r["run"]: r for r in data["runs"]}
    for run in two_runs:
        m = _metrics(run)
        name = run.name
        for key in ("box/AP", "box/AP50", "box/mIoU", "box/success", "fid", "clip/global"):
            assert df.loc[name, key] == m[key]
            assert by_run[name]["metrics"][key]["value"] == m[key]
        assert df.loc[name, "box/mIoU/lo"] == m["box/mIoU/lo"] and df.loc[name, "box/mIoU/hi"] == m["box/mIoU/hi"]
        assert by_run[name]["metrics"]["box/mIoU"]["hi"] == m["box/mIoU/hi"]
        assert df.loc[name, "N"] == m["n_samples"] == 16
        manifest = json.loads((run / "manifest.json").read_text())
        assert by_run[name]["config_hash"] == manifest["config_hash"]
        assert df.loc[name, "git"] == "0123456789"
        assert by_run[name]["generator_fp"] and by_run[name]["detector_fp"] == rr.TOY_DETECTOR["fingerprint"]
        assert manifest["models"]["detector"]["fingerprint"] == rr.TOY_DETECTOR["fingerprint"]
    assert data["higher_is_better"]["fid"] is False and data["higher_is_better"]["box/AP"] is True
    assert [r["run"] for r in data["runs"]] == ["good", "drifted"]  # best box/AP first


def test_markdown_and_html_show_values_with_ci(two_runs, report):
    out, _ = report
    md = (out / "leaderboard.md").read_text()
    page = (out / "leaderboard.html").read_text()
    for run in two_runs:
        m = _metrics(run)
        text = f"{m['box/mIoU']:.3f} [{m['box/mIoU/lo']:.3f}, {m['box/mIoU/hi']:.3f}]"
        assert text in md
        assert html.escape(text) in page
        assert f"| {m['box/AP']:.3f} |" in md
        assert f"{m['fid']:.2f}" in md
        # undefined COCO values (-1, no large objects here) are not shown as numbers
        assert m["box/APl"] == -1.0
    assert "-1.000" not in md and "box/APl" not in md
    header = md.splitlines()[0]
    assert header.startswith("| run | model | modality | tau | N | box/AP |")
    assert "Provenance:" in md and rr.TOY_DETECTOR["fingerprint"] in md
    assert page.count("<script>") == 1 and "http://" not in page and "https://" not in page


def test_sort_by_metric_and_direction(two_runs, tmp_path):
    from gligen_eval.reporting.rundata import load_runs
    from gligen_eval.reporting.tables import leaderboard_rows

    runs = load_runs(list(two_runs))
    order = lambda key: [r["run"] for r in leaderboard_rows(runs, key)[0]]  # noqa: E731
    assert order("box/AP") == ["good", "drifted"]
    assert order("fid") == ["drifted", "good"]  # lower is better: ascending
    assert order("clip/global") == ["drifted", "good"]
    assert order("run") == ["drifted", "good"]
    with pytest.raises(InputError, match=r"--sort-by 'box/APx'.*box/AP, box/AP50"):
        leaderboard_rows(runs, "box/APx")

    from gligen_eval.reporting.tables import write_leaderboard

    write_leaderboard(runs, tmp_path, sort_by="fid")
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [r["run"] for r in data["runs"]] == ["drifted", "good"]
    assert "sorted by fid" in (tmp_path / "leaderboard.html").read_text()


def test_index_lists_plots_and_skip_reasons(report):
    out, files = report
    index = (out / "index.md").read_text()
    assert "- by_size: [PNG](plots/by_size.png) · [SVG](plots/by_size.svg)" in index
    assert "- tradeoff: needs a τ sweep" in index
    assert "- lvis_rcf: no run has LVIS" in index
    assert "- kp_per_keypoint: no run has kp/AP_per_keypoint" in index
    assert "plots/tradeoff.png" not in files and not (out / "plots" / "tradeoff.png").exists()
    page = (out / "index.html").read_text()
    assert 'src="plots/by_size.png"' in page and 'href="gallery/good.html"' in page


def test_sweep_lvis_and_keypoint_plots(tmp_path):
    from gligen_eval.reporting import build_report
    from gligen_eval.reporting.plots import sweep_groups
    from gligen_eval.reporting.rundata import load_runs

    layouts = rr.make_layouts(4, hostile=False)
    sweep = []
    for i, tau in enumerate((0.1, 0.3, 0.6)):
        # the toy model drifts less the longer grounding is on; FID and CLIP are given as run inputs
        sweep.append(rr.make_run(tmp_path, f"tau{tau}", layouts=layouts, seeds=(0,), drift=0.08 * (1 - tau),
                                 sampler={"alpha": [tau, 0.0, 1 - tau]},
                                 point_metrics={"fid": 20.0 + 5 * tau, "clip/global": 0.30 - 0.02 * tau},
                                 scoring={"error_analysis": True}))  # fmt: skip
    # LVIS-style AP: the layouts read back from an LVIS file of them
    lvis = rr.make_run(tmp_path, "beta", layouts=layouts, seeds=(0,), sampler={"schedule": "beta", "beta": 0.5},
                       model="other-model", lvis=True)  # fmt: skip
    m = _metrics(lvis)
    assert all(0.0 <= m[k] <= 1.0 for k in ("box/APr", "box/APc", "box/APf"))
    runs = load_runs(sweep + [lvis])
    groups = sweep_groups(runs)
    assert [[r.label for r in g] for g in groups] == [["tau0.1", "tau0.3", "tau0.6"]]
    assert [r.tau for r in groups[0]] == [0.1, 0.3, 0.6]
    aps = [r.metric("box/AP") for r in groups[0]]
    assert aps[0] < aps[2]  # less drift with more grounding

    files = build_report(sweep + [lvis], tmp_path / "report")
    for name in ("tradeoff", "fid_clip", "lvis_rcf", "per_category_ap", "by_size", "by_num_objects",
                 "tide_errors", "ap_over_iou", "confusion"):
        assert f"plots/{name}.png" in files and f"plots/{name}.svg" in files, name
    svg = files["plots/tradeoff.svg"].read_text()
    assert "τ=0.3" in svg or "&#964;=0.3" in svg or "τ" in svg
    skipped = [ln for ln in (tmp_path / "report" / "index.md").read_text().splitlines() if ln.startswith("- ") and "no run" in ln]
    assert skipped == ["- kp_per_keypoint: no run has kp/AP_per_keypoint in breakdowns.json"]  # no pose model here


def test_keypoint_plot_draws_the_breakdown_scoring_wrote(tmp_path):
    """A pose model placing every keypoint 2% of the image right of where the layout puts it: each keypoint
    type's similarity is exp(-d² / (2 area (2σ)²)) averaged over the persons (d = 1.92 px, area = the box
    in pixels), and the plot draws exactly those bars."""
    from gligen_eval.reporting.plots import plot_kp_per_keypoint
    from gligen_eval.reporting.rundata import RunData
    from gligen_eval.scoring.coco import COCO_KEYPOINT_SIGMAS

    layouts = rr.with_keypoints(rr.make_layouts(4, hostile=False))
    run = rr.make_run(tmp_path, "pose", layouts=layouts, seeds=(0,), pose_shift=0.02)
    per_kp = json.loads((run / "breakdowns.json").read_text())["kp/AP_per_keypoint"]
    persons = [o for lay in layouts for o in lay.objects if o.keypoints]
    assert len(persons) == 2 and list(per_kp) == list(COCO_KEYPOINT_NAMES)
    for k, (name, sigma) in enumerate(zip(COCO_KEYPOINT_NAMES, COCO_KEYPOINT_SIGMAS)):
        sims = []
        for o in persons:
            area = (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) * rr.SIZE**2
            d = (min(1.0, o.keypoints[k][0] + 0.02) - o.keypoints[k][0]) * rr.SIZE
            sims.append(math.exp(-(d**2) / (2 * area * (2 * sigma) ** 2)))
        assert per_kp[name]["similarity"] == pytest.approx(sum(sims) / 2, rel=1e-9), name
        assert per_kp[name]["n"] == 2 and per_kp[name]["pck"] == sum(v >= 0.5 for v in sims) / 2, name
    ax = plot_kp_per_keypoint([RunData(run)]).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(COCO_KEYPOINT_NAMES)
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([per_kp[n]["similarity"] for n in COCO_KEYPOINT_NAMES])


def test_grouped_statistics_match_the_run(two_runs):
    from gligen_eval.reporting.plots import ap_by_layout_group, count_bin, instance_groups, size_bucket
    from gligen_eval.reporting.rundata import RunData

    assert [count_bin(n) for n in (1, 2, 3, 4, 5, 8, 9, 30)] == ["1", "2", "3-4", "3-4", "5-8", "5-8", "9+", "9+"]
    assert size_bucket((0, 0, 0.25, 0.25), 96, 96) == "small"  # 24 x 24 px
    assert size_bucket((0, 0, 0.5, 0.5), 96, 96) == "medium"  # 48 x 48 px
    assert size_bucket((0, 0, 1, 1), 96, 96) == "large"
    run = RunData(two_runs[1])
    m = _metrics(two_runs[1])
    everything = instance_groups(run, lambda i, s, lay: "all")["all"]
    assert everything["n"] == m["n_instances"]
    assert math.isclose(everything["mIoU"], m["box/mIoU"], rel_tol=0, abs_tol=1e-12)
    assert math.isclose(everything["success"], m["box/success"], rel_tol=0, abs_tol=1e-12)
    by_size = instance_groups(run, lambda i, s, lay: size_bucket(i.box, s.width, s.height))
    assert sum(g["n"] for g in by_size.values()) == m["n_instances"]
    assert set(by_size) <= {"small", "medium", "large"} and len(by_size) >= 2
    # AP recomputed over one group holding every layout is the run's AP
    assert ap_by_layout_group(run, lambda lay: "all")["all"] == pytest.approx(m["box/AP"], abs=1e-12)


def test_gallery_escapes_layout_text_and_orders_worst_first(two_runs, tmp_path):
    from gligen_eval.reporting.gallery import sample_order_key, write_gallery
    from gligen_eval.reporting.rundata import RunData

    run = RunData(two_runs[1])
    page = write_gallery(run, tmp_path / "g.html").read_text()
    assert rr.HOSTILE not in page
    assert html.escape(rr.HOSTILE, quote=True) in page
    assert page.count("<script") == 1 and "<b>bold" not in page
    keys = re.findall(r'data-sample="([^"]+)"', page)
    insts: dict[str, list] = {}
    for i in run.instances:
        insts.setdefault(i.sample_key, []).append(i)
    samples = {s.sample_key: s for s in run.samples}
    assert keys == sorted(samples, key=lambda k: sample_order_key(insts[k], samples[k]))
    assert len(keys) == 16
    shares = [sum(i.hit for i in insts[k]) / len(insts[k]) for k in keys]
    assert shares == sorted(shares) and shares[0] < 1.0
    assert "data:image/png;base64," in page
    assert 'value="low IoU"' in page and 'value="cat"' in page

    few = write_gallery(run, tmp_path / "sub" / "few.html", max_samples=3, embed=False).read_text()
    links = re.findall(r'<img src="([^"]+)"', few)
    assert len(links) == 3 and "the worst 3 of 16" in few
    assert all((tmp_path / "sub" / link).resolve().is_file() for link in links)


def test_bad_run_directories_name_the_file(two_runs, tmp_path):
    import shutil

    from gligen_eval.reporting import build_report
    from gligen_eval.reporting.rundata import RunData

    with pytest.raises(InputError, match="no manifest.json"):
        build_report([tmp_path], tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(two_runs[0], broken)
    (broken / "metrics.json").unlink()
    with pytest.raises(InputError, match=r"broken: unfinished run \(no metrics.json\)"):
        RunData(broken)
    shutil.rmtree(broken)
    shutil.copytree(two_runs[0], broken)
    lines = (broken / "instances.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"best_iou"', '"best_iou_typo"')
    (broken / "instances.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"instances.jsonl \[line 3\]: bad record"):
        build_report([broken], tmp_path / "out2")


def test_same_names_are_told_apart(two_runs, tmp_path):
    import shutil

    from gligen_eval.reporting import build_report

    copy = tmp_path / "copy_of_good"
    shutil.copytree(two_runs[0], copy)
    files = build_report([two_runs[0], copy], tmp_path / "out")
    runs = [r["run"] for r in json.loads(files["leaderboard.json"].read_text())["runs"]]
    assert runs == ["good", "good (copy_of_good)"]
    assert len([k for k in files if k.startswith("gallery/")]) == 2


def test_cli_report(two_runs, tmp_path, capsys):
    from gligen_eval.cli import main

    assert main(["report", str(two_runs[0]), str(two_runs[1]), "--out", str(tmp_path), "--sort-by", "box/mIoU"]) == 0
    printed = capsys.readouterr().out
    assert "leaderboard.html" in printed and (tmp_path / "leaderboard.html").is_file()


def test_keypoint_layouts_are_drawn_and_named(tmp_path):
    from gligen_eval.records import GroundedObject, Layout
    from gligen_eval.reporting.gallery import write_gallery
    from gligen_eval.reporting.rundata import RunData
    from gligen_eval.scoring.coco import COCO_SKELETON

    kps = tuple((0.3 + 0.02 * (i % 5), 0.2 + 0.04 * i, 2 if i != 3 else 0) for i in range(17))
    person = GroundedObject(phrase="a person", box=(0.2, 0.1, 0.6, 0.95), category="person", keypoints=kps)
    layouts = [Layout(layout_id="K0", caption="a person waving", objects=(person,))]
    run = rr.make_run(tmp_path, "kp", layouts=layouts, seeds=(0,))
    data = RunData(run)
    assert data.modality == "keypoint"
    page = write_gallery(data, tmp_path / "kp.html").read_text()
    visible_edges = sum(1 for a, b in COCO_SKELETON if kps[a - 1][2] > 0 and kps[b - 1][2] > 0)
    assert page.count('stroke="#bf8700"') == visible_edges
    assert page.count('fill="#bf8700"') == 16  # one dot per labelled keypoint


def test_a_run_with_metrics_only_still_reports(tmp_path):
    from gligen_eval import store
    from gligen_eval.reporting import build_report

    run = tmp_path / "external"
    store.atomic_write_json(run / "manifest.json", {"schema_version": 1, "name": "external", "config": {}})
    store.atomic_write_json(run / "metrics.json", {"box/AP": 0.25, "box/AP/lo": 0.2, "box/AP/hi": 0.3, "n_samples": 50})
    files = build_report([run], tmp_path / "out")
    md = files["leaderboard.md"].read_text()
    assert "| external | ? | ? |  | 50 | 0.250 [0.200, 0.300] |" in md
    index = files["index.md"].read_text()
    assert "- by_size: no run has instances.jsonl records" in index
    assert "all 0 images" in files["gallery/external.html"].read_text()
