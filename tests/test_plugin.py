"""The pytest plugin (pytest11 entry point ``gligen``), exercised with ``pytester``.

The inner test sessions swap the real runner for the toy one of ``report_runs`` by overriding the
``gligen_runner`` fixture in their conftest: a run then takes well under a second and writes a
real run directory (toy images, real scoring), so thresholds, caching and the baseline gate are
all tested for real.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import gligen_eval
from gligen_eval.pytest_candidate import default_out_root

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, {str(TESTS_DIR)!r})
import report_runs as rr


@pytest.fixture(scope="session")
def gligen_runner():
    from gligen_eval import store
    from gligen_eval.runner import SWEEP_INDEX, sweep_points

    def run(cfg, *, resume=False):
        adapter = f" adapter={{Path(cfg.model.adapter).name}}" if cfg.model.adapter else ""
        with open(Path(__file__).parent / "calls.txt", "a") as f:
            f.write(f"{{cfg.name}} model={{cfg.model.name}}{{adapter}} limit={{cfg.layouts.limit}} steps={{cfg.sampler.steps}}\\n")
        drift = 0.05 if "bad" in (cfg.model.name + adapter) else 0.0  # "bad" ignores part of its grounding
        if not cfg.sweep.tau:
            return rr.make_run(Path(cfg.out).parent, cfg.name, config=cfg, drift=drift)
        points = []
        for tau, sub in sweep_points(cfg):
            out = rr.make_run(Path(sub.out).parent, sub.name, config=sub, drift=drift * (1 + tau))
            points.append({{"tau": tau, "run": out.name, "metrics": store.read_json(out / store.METRICS)}})
        store.atomic_write_json(Path(cfg.out) / SWEEP_INDEX, {{"name": cfg.name, "parameter": "tau", "points": points}})
        return Path(cfg.out)

    return run
"""

TOY_CONFIG = """
name: toy
layouts: {source: sample, limit: 8}
model: {name: good}
sampler: {steps: 10, height: 96, width: 96, seeds_per_layout: 2}
detector: {weights: toy-color-detector}
"""

GATE = """
metrics:
  box/AP: {max_drop: 0.01}
  box/mIoU: {max_drop: 0.01}
bootstrap: {n_boot: 200, n_boot_ap: 20}
"""

BENCH = """
import pytest


@pytest.mark.gligen(config="toy.yaml", min={"box/AP": 0.5, "box/success": 0.9}, max={"box/mIoU": 1.0})
def test_good(gligen_run):
    assert gligen_run.metrics["n_samples"] == 16
    assert gligen_run["box/AP"] > 0.5 and "box/mIoU" in gligen_run
    assert (gligen_run.run_dir / "metrics.json").is_file()


@pytest.mark.gligen(config="toy.yaml", min={"box/AP": 0.99, "kp/AP": 0.1})
def test_too_strict():
    pass
"""


@pytest.fixture(scope="module")
def _warm_imports(tmp_path_factory) -> None:
    """Import in this process what the inner sessions use: pytester's in-process runs drop the modules a
    run imported, and compiled extensions (numpy.fft under scipy) cannot be imported a second time."""
    import report_runs as rr
    from gligen_eval.reporting import compare_runs

    run = rr.make_run(tmp_path_factory.mktemp("warm"), "warm", layouts=rr.make_layouts(2), seeds=(0,))
    compare_runs(run, run, None, n_boot=2)


@pytest.fixture
def suite(pytester: pytest.Pytester, _warm_imports, monkeypatch, tmp_path_factory) -> pytest.Pytester:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", toy=TOY_CONFIG, gate=GATE)
    return pytester


def _calls(pytester: pytest.Pytester) -> list[str]:
    p = pytester.path / "calls.txt"
    return p.read_text().splitlines() if p.exists() else []


def test_marker_thresholds_pass_and_fail(suite):
    suite.makepyfile(test_bench=BENCH)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    failed_min = re.search(r"box/AP = (0\.\d{4}) < min 0\.99", out)  # the toy run's AP, below the minimum
    assert failed_min, out
    assert "kp/AP: not in the run's metrics (have: box/AP," in out
    assert "test_good" not in "".join(line for line in out.splitlines() if line.startswith("FAILED"))
    # both tests share one run, and the summary names it
    assert _calls(suite) == ["toy model=good limit=8 steps=10"]
    result.stdout.fnmatch_lines(["*gligen-eval runs*", f"toy * ran * box/AP={failed_min.group(1)}*"])
    # run directories and the summary go to the user's cache, never into the source tree
    assert not (suite.path / "runs").exists()
    summary_path = default_out_root() / "pytest-gligen.json"
    assert default_out_root().is_relative_to(os.environ["XDG_CACHE_HOME"])
    result.stdout.fnmatch_lines([f"summary: {summary_path}"])
    summary = json.loads(summary_path.read_text())
    assert summary["runs"][0]["metrics"]["n_samples"] == 16
    assert summary["runs"][0]["config_hash"] and "machine" in summary
    assert summary["code"]["gligen_eval"] == gligen_eval.__version__ and summary["code"]["files"].startswith("sha256:")

    # a second session reuses the finished run directory instead of running again
    again = suite.runpytest("-p", "no:cacheprovider", "-k", "good")
    again.assert_outcomes(passed=1, deselected=1)
    assert len(_calls(suite)) == 1
    again.stdout.fnmatch_lines(["toy * reused *"])


@pytest.mark.parametrize(
    "marker, message",
    [
        ('config="toy.yaml", minimum={"box/AP": 0.1}', "unknown @pytest.mark.gligen key(s) minimum"),
        ('config="toy.yaml", min={"box/AP": "high"}', "must map a metric name to a number"),
        ('"toy.yaml", config="toy.yaml"', "got the config twice"),
    ],
)
def test_bad_markers_are_usage_errors(suite, marker, message):
    suite.makepyfile(test_bad=f"import pytest\n\n@pytest.mark.gligen({marker})\ndef test_x():\n    pass\n")
    result = suite.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert _calls(suite) == []


def test_command_line_options_reach_the_config(suite):
    suite.makepyfile(test_opts="""
        def test_fixture_without_marker(gligen_run):
            cfg = gligen_run.config
            assert cfg.layouts.limit == 3 and cfg.model.name == "other" and cfg.sampler.steps == 12
            assert gligen_run.metrics["n_samples"] == 6
            assert gligen_run.run_dir.parent.name == "mine"
    """)  # fmt: skip
    result = suite.runpytest("-p", "no:cacheprovider", "--gligen-config", "toy.yaml", "--gligen-limit", "3",
                             "--gligen-model", "other", "--gligen-set", "sampler.steps=12", "--gligen-out", "mine")  # fmt: skip
    result.assert_outcomes(passed=1)
    assert _calls(suite) == ["toy model=other limit=3 steps=12"]
    assert (suite.path / "mine" / "pytest-gligen.json").is_file()


def test_baseline_gate(suite):
    suite.makepyfile(test_bench="""
        import pytest

        @pytest.mark.gligen(config="toy.yaml", name="coco_box")
        def test_coco_box(gligen_run):
            pass
    """)  # fmt: skip
    base = suite.runpytest("-p", "no:cacheprovider", "--gligen-out", "base")
    base.assert_outcomes(passed=1)

    # no --gligen-gate: the built-in gate (headline metrics may not drop by more than one point)
    worse = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "bad", "--gligen-baseline", "base",
                            "--gligen-out", "cand")  # fmt: skip
    worse.assert_outcomes(failed=1)
    out = worse.stdout.str()
    assert "regression against baseline" in out and "REGRESSION" in out and "| box/AP |" in out
    assert "Gate: `built-in default gate`" in out and "| box/mIoU |" in out
    summary = json.loads((suite.path / "cand" / "pytest-gligen.json").read_text())
    assert summary["runs"][0]["checks"][-1]["verdict"] == "regression"

    same = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "retrained", "--gligen-baseline", "base",
                           "--gligen-gate", "gate.yaml", "--gligen-out", "cand2")  # fmt: skip
    same.assert_outcomes(passed=1)

    (suite.path / "empty").mkdir()
    none = suite.runpytest("-p", "no:cacheprovider", "--gligen-baseline", "empty", "--gligen-out", "cand3")
    none.assert_outcomes(failed=1)
    assert "no baseline run named 'coco_box' in empty" in none.stdout.str()
    assert [c.split()[1] for c in _calls(suite)] == ["model=good", "model=bad", "model=retrained", "model=good"]


def test_threshold_messages():
    from gligen_eval.pytest_plugin import check_thresholds

    m = {"box/AP": 0.3, "fid": 31.0, "clip/global": float("nan")}
    assert check_thresholds(m, {"box/AP": 0.2}, {"fid": 40}) == []
    assert check_thresholds(m, {"box/AP": 0.35}, {"fid": 30}) == ["box/AP = 0.3 < min 0.35", "fid = 31 > max 30"]
    assert check_thresholds(m, {"clip/global": 0.1}, None) == ["clip/global = nan is not a finite number"]


# --------------------------------------------------------------------------------------------
# the candidate, reuse, sweeps


def _fake_adapter(path: Path, **meta: str) -> Path:
    """A safetensors file with the metadata save_adapter writes (the plugin reads the header only)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"position_net.null_positive_feature": np.zeros(4, dtype=np.float32)}, str(path),
              metadata={"format": "gligen-eval-adapter", "format_version": "1", "modality": "text-box", **meta})  # fmt: skip
    return path


ONE_SUITE = """
import pytest

@pytest.mark.gligen(config="toy.yaml", name="coco_box", set=["model.modality=text-box"])
def test_coco_box(gligen_run):
    assert gligen_run.config.model.modality == "text-box"
"""


def test_adapter_file_as_the_model(suite):
    """`--gligen-model ADAPTER.safetensors` plugs the adapter into the base it records, or --gligen-base."""
    suite.makepyfile(test_bench=ONE_SUITE)
    _fake_adapter(suite.path / "new-adapter.safetensors", base="good")
    res = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "new-adapter.safetensors")
    res.assert_outcomes(passed=1)
    assert _calls(suite) == ["coco_box model=good adapter=new-adapter.safetensors limit=8 steps=10"]

    _fake_adapter(suite.path / "bad-adapter.safetensors")  # records no base
    res = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "bad-adapter.safetensors")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "bad-adapter.safetensors is an adapter file (text-box modality) that records no base" in err
    assert "--gligen-base" in err and "Traceback" not in err
    res = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "bad-adapter.safetensors", "--gligen-base", "retrained")
    res.assert_outcomes(passed=1)
    assert _calls(suite)[-1] == "coco_box model=retrained adapter=bad-adapter.safetensors limit=8 steps=10"
    # a checkpoint file wants its base: the message names the option
    (suite.path / "official.bin").write_bytes(b"not read here")
    res = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "official.bin")
    res.assert_outcomes(errors=1)
    assert "official.bin is an official GLIGEN checkpoint" in res.stdout.str() and "--gligen-base" in res.stdout.str()
    assert len(_calls(suite)) == 2
    for bad, message in ((["--gligen-base", "x"], "give it with --gligen-model"),
                         (["--gligen-model", "new-adapter.safetensors", "--gligen-modality", "keypoint"],
                          "the adapter new-adapter.safetensors records modality text-box")):  # fmt: skip
        res = suite.runpytest("-p", "no:cacheprovider", *bad)
        assert res.ret == pytest.ExitCode.USAGE_ERROR and message in res.stderr.str()


def test_suites_of_another_modality_skip_and_nothing_checked_fails(suite):
    suite.makepyfile(test_bench=ONE_SUITE + """

@pytest.mark.gligen(config="toy.yaml", name="kp", set=["model.modality=keypoint"])
def test_keypoints(gligen_run):
    pass
""")  # fmt: skip
    _fake_adapter(suite.path / "kp.safetensors", base="good", modality="keypoint")
    res = suite.runpytest("-p", "no:cacheprovider", "-rs", "--gligen-model", "kp.safetensors")
    res.assert_outcomes(passed=1, skipped=1)
    res.stdout.fnmatch_lines(["*suite 'coco_box' evaluates text-box models; the candidate kp.safetensors is a keypoint model*"])
    assert [c.split()[0] for c in _calls(suite)] == ["kp"]
    # no suite fits the candidate: the session fails instead of passing on nothing
    res = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "kp.safetensors", "-k", "coco_box")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*no suite evaluates a keypoint model: nothing checked the candidate kp.safetensors*"])


def test_reuse_needs_the_same_code(suite, monkeypatch):
    """A finished run is reused only when the gligen-eval version, commit and files that made it are the same."""
    import gligen_eval.pytest_plugin as plugin

    suite.makepyfile(test_bench=ONE_SUITE)
    real = plugin.code_identity()
    assert real["gligen_eval"] == gligen_eval.__version__ and real["files"].startswith("sha256:")
    assert "git" in real
    for code, ran in ((real, 1), (real, 1), ({**real, "files": "sha256:edited"}, 2), ({**real, "git": "f00"}, 3)):
        monkeypatch.setattr(plugin, "code_identity", lambda code=code: code)
        suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
        assert len(_calls(suite)) == ran, code
    runs = sorted(p.name for p in default_out_root().iterdir() if p.is_dir())
    assert len(runs) == 3 and all(r.startswith("coco_box-") for r in runs)


SWEEP_CONFIG = """
name: toy-sweep
layouts: {source: sample, limit: 6}
model: {name: good}
sampler: {steps: 10, height: 96, width: 96, seeds_per_layout: 2, schedule: alpha}
sweep: {tau: [0.0, 1.0]}
detector: {weights: toy-color-detector}
"""


@pytest.mark.slow  # about 17 s: two τ sweeps through pytester
def test_sweep_runs_are_checked_and_gated_per_point(suite):
    suite.makefile(".yaml", sweep=SWEEP_CONFIG)
    suite.makepyfile(test_bench="""
        import pytest

        @pytest.mark.gligen(config="sweep.yaml", name="tau-sweep", min={"box/AP": 0.5})
        def test_tau_sweep(gligen_run):
            assert [p.tau for p in gligen_run.points] == [0.0, 1.0]
            assert all(p.metrics["n_samples"] == 12 for p in gligen_run.points)
    """)  # fmt: skip
    suite.runpytest("-p", "no:cacheprovider", "--gligen-out", "base").assert_outcomes(passed=1)
    again = suite.runpytest("-p", "no:cacheprovider", "--gligen-out", "base", "--gligen-baseline", "base")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["tau-sweep τ=0 * reused *", "gate tau-sweep τ=1: pass*"])
    assert len(_calls(suite)) == 1
    worse = suite.runpytest("-p", "no:cacheprovider", "--gligen-model", "bad", "--gligen-baseline", "base",
                            "--gligen-out", "cand")  # fmt: skip
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.assert_outcomes(failed=1)
    out = worse.stdout.str()
    assert "τ=0: regression against baseline" in out and "τ=1: regression against baseline" in out
    assert "| box/AP |" in out and "τ=1: box/AP = " in out  # the gate's Markdown and the per-point floor


# --------------------------------------------------------------------------------------------
# every suite of benchmarks/ runs the candidate, the overrides and the gate

RECORDING_CONFTEST = """

import json as _json
import os as _os


@pytest.fixture(scope="session")
def gligen_runner():
    def run(cfg, *, resume=True):
        row = {"test": _os.environ["PYTEST_CURRENT_TEST"].split(" ")[0], "config": cfg.to_dict()}
        with open(_os.environ["GLIGEN_RECORD"], "a") as f:
            f.write(_json.dumps(row) + "\\n")
        pytest.skip("config recorded")

    return run


def pytest_collection_modifyitems(items):
    with open(_os.environ["GLIGEN_RECORD"] + ".items", "w") as f:
        for item in items:
            f.write(_json.dumps({"test": item.nodeid, "gligen": item.get_closest_marker("gligen") is not None}) + "\\n")
"""


def _record_suites(pytester: pytest.Pytester, monkeypatch, tag: str, mode: str, *args: str):
    record = pytester.path / f"record-{tag}.jsonl"
    monkeypatch.setenv("GLIGEN_RECORD", str(record))
    monkeypatch.setenv("GLIGEN_BENCH_MODE", mode)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "benchmarks", "--gligen-out", "cand",
                                        "--gligen-set", "sampler.guidance_scale=3.25", *args)  # fmt: skip
    items = [json.loads(r) for r in Path(f"{record}.items").read_text().splitlines()]
    runs = [json.loads(r) for r in record.read_text().splitlines()] if record.exists() else []
    return res, items, runs


def test_every_benchmark_suite_runs_the_candidate(pytester, monkeypatch, tmp_path):
    import shutil

    shutil.copytree(TESTS_DIR.parent / "benchmarks", pytester.path / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__", "bench_*.py"))  # fmt: skip
    conftest = pytester.path / "benchmarks" / "conftest.py"
    conftest.write_text(conftest.read_text() + "\nimport pytest\n" + RECORDING_CONFTEST)
    out = str((pytester.path / "cand").resolve())

    for mode in ("tiny", "full"):
        res, items, runs = _record_suites(pytester, monkeypatch, mode, mode, "--gligen-model", "lab/new-model")
        assert len(items) >= 6, res.stdout.str()
        for item in items:  # gated like every gligen test: no suite builds and runs a config of its own
            assert item["gligen"], f"{item['test']} is not a @pytest.mark.gligen suite"
        assert sorted(r["test"] for r in runs) == sorted(i["test"] for i in items), res.stdout.str()
        for r in runs:
            cfg = r["config"]
            assert cfg["model"]["name"] == "lab/new-model", (mode, r["test"])
            assert cfg["model"]["adapter"] is None and cfg["sampler"]["guidance_scale"] == 3.25, (mode, r["test"])
            assert cfg["out"].startswith(out + os.sep) and cfg["model"]["modality"], (mode, r["test"])

    adapter = _fake_adapter(tmp_path / "new-adapter.safetensors")
    res, items, runs = _record_suites(pytester, monkeypatch, "adapter", "tiny", "--gligen-model", str(adapter),
                                      "--gligen-base", "tiny")  # fmt: skip
    assert {r["config"]["model"]["modality"] for r in runs} == {"text-box"}
    assert len(runs) >= 3
    for r in runs:
        assert r["config"]["model"]["name"] == "tiny" and r["config"]["model"]["adapter"] == str(adapter)
    skipped = [line for line in res.stdout.lines if "evaluates" in line and "new-adapter.safetensors is a text-box model" in line]
    assert len(skipped) == len(items) - len(runs) >= 3, res.stdout.str()


# --------------------------------------------------------------------------------------------
# the documented regression workflow, end to end on tiny models

STRUCTURE_DETECTOR = '''
import numpy as np

from gligen_eval.records import Detection
from gligen_eval.scoring.coco import COCO80_NAMES


class StructureDetector:
    """Sees "everything everywhere" in an image with any structure, nothing in a flat one."""

    def __init__(self, name=None, **_):
        self.name = name or "structure"

    def fingerprint(self):
        return "structure-detector-1"

    def detect(self, images):
        out = []
        for im in images:
            flat = float(np.asarray(im.convert("L"), dtype=np.float32).std()) < 1.0
            out.append([] if flat else [Detection(box=(0.0, 0.0, 1.0, 1.0), label=n, score=0.9) for n in COCO80_NAMES])
        return out
'''

E2E_CONFIG = """
name: e2e
layouts: {source: sample, limit: 2}
model: {name: tiny, modality: text-box}
sampler: {steps: 2, height: 32, width: 32, batch_size: 4, seeds_per_layout: 2, schedule: alpha, alpha: [1.0, 0.0, 0.0]}
detector: {kind: "structure_detector:StructureDetector", weights: none}
scoring: {instance_min_score: 0.0, bootstrap: 50, bootstrap_ap: 5}
"""

E2E_SUITE = """
import pytest

@pytest.mark.gligen(config="e2e.yaml", name="e2e-text-box")
def test_text_box(gligen_run):
    assert gligen_run.metrics["n_samples"] == 4
"""


@pytest.mark.slow
def test_regression_workflow_on_tiny_models(pytester, monkeypatch, tmp_path_factory):
    """`pytest SUITES --gligen-model ADAPTER --gligen-baseline RUNS` with real tiny runs: the same adapter
    passes the built-in gate, a diverged one (NaN gates: flat images, nothing detected) fails it."""
    import torch

    from gligen_eval.generation.adapters import save_adapter
    from gligen_eval.generation.tiny import tiny_components

    unet = tiny_components(seed=0, sample_size=32)["unet"]
    save_adapter(unet, pytester.path / "base-adapter.safetensors", metadata={"base": "tiny"})
    save_adapter(unet, pytester.path / "new-adapter.safetensors", metadata={"base": "tiny"})
    with torch.no_grad():
        for key, p in unet.named_parameters():
            if key.endswith("fuser.alpha_attn"):
                p.fill_(float("nan"))
    save_adapter(unet, pytester.path / "diverged-adapter.safetensors", metadata={"base": "tiny"})
    pytester.makepyfile(structure_detector=STRUCTURE_DETECTOR, test_regression=E2E_SUITE)
    pytester.makefile(".yaml", e2e=E2E_CONFIG)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))

    def pytest_(*args):
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning", *args)

    base = pytest_("--gligen-model", "base-adapter.safetensors", "--gligen-out", "runs/base")
    base.assert_outcomes(passed=1)
    manifest = json.loads(next((pytester.path / "runs" / "base").glob("e2e-text-box-*/manifest.json")).read_text())
    assert manifest["config"]["model"]["adapter"].endswith("base-adapter.safetensors")

    same = pytest_("--gligen-model", "new-adapter.safetensors", "--gligen-baseline", "runs/base")
    assert same.ret == 0, same.stdout.str()
    same.stdout.fnmatch_lines(["gate e2e-text-box: pass (all * gated metric(s) pass)"])

    worse = pytest_("--gligen-model", "diverged-adapter.safetensors", "--gligen-baseline", "runs/base")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.assert_outcomes(failed=1)
    out = worse.stdout.str()
    assert "regression against baseline" in out and "REGRESSION" in out and "| box/mIoU |" in out
    worse.stdout.fnmatch_lines(["gate e2e-text-box: regression (* box/mIoU (dropped by more than 0.01)*"])


def test_slow_tests_are_deselected_by_default(pytester, monkeypatch):
    """The default run leaves `slow` out; GLIGEN_EVAL_FULL=1 (CI), `-m ""` or a node id bring it back."""
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makepyfile(test_mix="""
        import pytest

        @pytest.mark.slow
        def test_slow():
            pass

        def test_fast():
            pass
    """)  # fmt: skip
    monkeypatch.delenv("GLIGEN_EVAL_FULL", raising=False)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, deselected=1)
    pytester.runpytest("-p", "no:cacheprovider", "-m", "").assert_outcomes(passed=2)
    pytester.runpytest("-p", "no:cacheprovider", "test_mix.py::test_slow").assert_outcomes(passed=1)
    monkeypatch.setenv("GLIGEN_EVAL_FULL", "1")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
