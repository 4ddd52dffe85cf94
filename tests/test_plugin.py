"""The pytest plugin (pytest11 entry point ``gligen``), exercised with ``pytester``.

The inner test sessions swap the real runner for the toy one of ``report_runs`` by overriding the
``gligen_runner`` fixture in their conftest: a run then takes well under a second and writes a
real run directory (toy images, real scoring), so thresholds, caching and the baseline gate are
all tested for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    def run(cfg, *, resume=False):
        with open(Path(__file__).parent / "calls.txt", "a") as f:
            f.write(f"{{cfg.name}} model={{cfg.model.name}} limit={{cfg.layouts.limit}} steps={{cfg.sampler.steps}}\\n")
        drift = 0.05 if cfg.model.name == "bad" else 0.0  # "bad" ignores part of its grounding
        return rr.make_run(Path(cfg.out).parent, cfg.name, config=cfg, drift=drift)

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
def suite(pytester: pytest.Pytester, _warm_imports) -> pytest.Pytester:
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
    assert "box/AP = 0.7779 < min 0.99" in out  # the toy detector ties scores: canonical tie order
    assert "kp/AP: not in the run's metrics (have: box/AP," in out
    assert "test_good" not in "".join(line for line in out.splitlines() if line.startswith("FAILED"))
    # both tests share one run, and the summary names it
    assert _calls(suite) == ["toy model=good limit=8 steps=10"]
    result.stdout.fnmatch_lines(["*gligen-eval runs*", "toy * ran * box/AP=0.7779*"])
    summary = json.loads((suite.path / "runs" / "pytest" / "pytest-gligen.json").read_text())
    assert summary["runs"][0]["metrics"]["n_samples"] == 16
    assert summary["runs"][0]["config_hash"] and "machine" in summary

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
