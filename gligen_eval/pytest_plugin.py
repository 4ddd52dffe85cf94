"""pytest plugin: run gligen-eval configs from tests, assert thresholds, gate against a baseline.

Registered through the ``pytest11`` entry point, so it is active wherever gligen-eval is installed.

Options (group ``gligen``)::

    --gligen-model NAME      model.name for every run (a diffusers folder, an official GLIGEN .bin, "tiny")
    --gligen-baseline DIR    gate every gligen test against this run (or a folder holding runs by name)
    --gligen-gate GATE.yaml  gate used with --gligen-baseline (default: the built-in gate)
    --gligen-out DIR         where run directories go (default: <rootdir>/runs/pytest)
    --gligen-limit N         layouts.limit for every run
    --gligen-config CFG      config for tests whose marker names none (default: the offline demo config)
    --gligen-set KEY=VALUE   override for every run (repeatable)

Marker (whitelisted keys; anything else is a usage error)::

    @pytest.mark.gligen(config="coco_box.yaml", min={"box/AP": 0.2}, max={"fid": 30},
                        set=["sampler.steps=25"], name="coco_box", gate="gate.yaml")
    def test_coco_box(gligen_run):
        assert gligen_run.metrics["n_samples"] > 0

A marked test gets the ``gligen_run`` fixture even when it does not ask for it; the thresholds are
checked after the test body. ``config`` and ``gate`` paths are relative to the test file.
Fixtures: ``gligen_run`` (a :class:`GligenRun`) and ``gligen_runner`` (the function that runs a
config; override it in a conftest to plug in another runner).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

MARKER_NAME = "gligen"
MARKER_KEYS = ("config", "min", "max", "set", "gate", "name")

_SESSION_RUNS = pytest.StashKey[dict]()
_ITEM_RUN = pytest.StashKey["GligenRun"]()


@dataclass
class GligenRun:
    """A finished run as seen by a test: its directory, resolved config and metrics."""

    name: str
    run_dir: Path
    config: Any  # gligen_eval.config.RunConfig
    metrics: dict[str, Any]
    reused: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __contains__(self, key: str) -> bool:
        return key in self.metrics


# --------------------------------------------------------------------------------------------
# options and marker


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gligen", "gligen-eval benchmarks")
    g.addoption("--gligen-model", default=None, metavar="NAME",
                help="model.name for every gligen run (a diffusers folder, an official GLIGEN .bin, or 'tiny')")
    g.addoption("--gligen-baseline", default=None, metavar="DIR",
                help="baseline run directory, or a folder holding baseline runs by name; "
                     "every gligen test is also gated against it")  # fmt: skip
    g.addoption("--gligen-gate", default=None, metavar="GATE.yaml",
                help="gate file used with --gligen-baseline (default: the built-in gate)")
    g.addoption("--gligen-out", default=None, metavar="DIR",
                help="folder for run directories (default: <rootdir>/runs/pytest)")
    g.addoption("--gligen-limit", default=None, type=int, metavar="N", help="layouts.limit for every gligen run")
    g.addoption("--gligen-config", default=None, metavar="CONFIG.yaml",
                help="config for gligen tests whose marker names none (default: the offline demo config)")
    g.addoption("--gligen-set", action="append", default=[], metavar="KEY=VALUE",
                help="config override for every gligen run (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gligen(config=None, min=None, max=None, set=None, gate=None, name=None): run a gligen-eval config "
        "(through the gligen_run fixture) and assert metric thresholds; min/max map metric keys to bounds",
    )
    config.stash[_SESSION_RUNS] = {}


def _marker_kwargs(marker: pytest.Mark, where: str) -> dict[str, Any]:
    kwargs = dict(marker.kwargs)
    if len(marker.args) > 1:
        raise pytest.UsageError(f"{where}: @pytest.mark.gligen takes at most one positional argument (the config)")
    if marker.args:
        if "config" in kwargs:
            raise pytest.UsageError(f"{where}: @pytest.mark.gligen got the config twice")
        kwargs["config"] = marker.args[0]
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    if unknown:
        raise pytest.UsageError(
            f"{where}: unknown @pytest.mark.gligen key(s) {', '.join(unknown)} (allowed: {', '.join(MARKER_KEYS)})"
        )
    for bound in ("min", "max"):
        value = kwargs.get(bound)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise pytest.UsageError(f"{where}: @pytest.mark.gligen {bound}= must be a dict of metric -> number")
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise pytest.UsageError(
                    f"{where}: @pytest.mark.gligen {bound}= entry {k!r}: {v!r} must map a metric name to a number"
                )
    sets = kwargs.get("set")
    if sets is not None:
        if isinstance(sets, str):
            kwargs["set"] = [sets]
        elif not all(isinstance(s, str) for s in sets):
            raise pytest.UsageError(f"{where}: @pytest.mark.gligen set= must be a list of 'key=value' strings")
    for key in ("config", "gate", "name"):
        if kwargs.get(key) is not None and not isinstance(kwargs[key], (str, Path)):
            raise pytest.UsageError(f"{where}: @pytest.mark.gligen {key}= must be a string")
    return kwargs


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker(MARKER_NAME)
        if marker is None:
            continue
        _marker_kwargs(marker, item.nodeid)
        names = getattr(item, "fixturenames", None)
        if names is not None and "gligen_run" not in names:
            names.append("gligen_run")


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def gligen_runner() -> Callable[..., Path]:
    """The function that runs a config: ``runner(cfg, resume=True) -> run directory``."""
    from gligen_eval.runner import run

    def _run(cfg, *, resume: bool = True) -> Path:
        return run(cfg, resume=resume, progress=False)

    return _run


@pytest.fixture
def gligen_run(request: pytest.FixtureRequest, gligen_runner: Callable[..., Path]) -> GligenRun:
    """Run (or reuse) the config of this test's ``gligen`` marker and return its metrics."""
    marker = request.node.get_closest_marker(MARKER_NAME)
    spec = _marker_kwargs(marker, request.node.nodeid) if marker is not None else {}
    cfg, name = _resolve_config(request.config, spec, Path(str(request.node.path)).parent)
    result = _run_or_reuse(request.config, cfg, name, gligen_runner)
    request.node.stash[_ITEM_RUN] = result
    return result


def _resolve_config(config: pytest.Config, spec: Mapping[str, Any], test_dir: Path):
    from gligen_eval.config import config_from_dict, load_config
    from gligen_eval.records import stable_hash
    from gligen_eval.errors import GligenEvalError

    cfg_path = spec.get("config") or config.getoption("gligen_config")
    if cfg_path is not None:
        p = Path(cfg_path)
        if not p.is_absolute():
            local = test_dir / p
            p = local if local.exists() else Path(str(config.rootpath)) / p
    overrides = list(spec.get("set") or []) + list(config.getoption("gligen_set") or [])
    if config.getoption("gligen_model"):
        overrides.append(f"model.name={config.getoption('gligen_model')}")
    if config.getoption("gligen_limit") is not None:
        overrides.append(f"layouts.limit={int(config.getoption('gligen_limit'))}")
    try:
        cfg = load_config(p if cfg_path is not None else None, overrides)
    except GligenEvalError as e:
        pytest.fail(f"gligen config: {e}", pytrace=False)
    name = str(spec.get("name") or (Path(cfg_path).stem if cfg_path is not None else cfg.name))
    data = cfg.to_dict()
    data["name"] = name
    out_root = Path(config.getoption("gligen_out") or Path(str(config.rootpath)) / "runs" / "pytest")
    data["out"] = str((out_root / f"{name}-{stable_hash(data, length=8)}").resolve())
    return config_from_dict(data), name


def _run_or_reuse(config: pytest.Config, cfg, name: str, runner: Callable[..., Path]) -> GligenRun:
    from gligen_eval import store
    from gligen_eval.errors import GligenEvalError
    from gligen_eval.records import stable_hash

    cache: dict = config.stash[_SESSION_RUNS]
    config_hash = stable_hash(cfg.to_dict())
    if config_hash in cache:
        return cache[config_hash]
    rd = store.RunDir(cfg.out)
    reused = False
    if rd.is_complete() and rd.exists() and rd.manifest().get("config_hash") == config_hash:
        reused = True
        run_dir = rd.root
    else:
        try:
            run_dir = Path(runner(cfg, resume=True))
        except GligenEvalError as e:
            pytest.fail(f"gligen run '{name}' failed: {e}", pytrace=False)
    metrics_path = Path(run_dir) / store.METRICS
    if not metrics_path.is_file():
        pytest.fail(f"gligen run '{name}' wrote no {store.METRICS} in {run_dir}", pytrace=False)
    result = GligenRun(name=name, run_dir=Path(run_dir), config=cfg, metrics=store.read_json(metrics_path),
                       reused=reused)  # fmt: skip
    cache[config_hash] = result
    return result


# --------------------------------------------------------------------------------------------
# checks after the test body


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    marker = item.get_closest_marker(MARKER_NAME)
    result = item.stash.get(_ITEM_RUN, None)
    if result is not None:
        spec = _marker_kwargs(marker, item.nodeid) if marker is not None else {}
        problems = check_thresholds(result.metrics, spec.get("min"), spec.get("max"))
        result.checks.extend({"kind": "threshold", "test": item.nodeid, "problem": p} for p in problems)
        baseline = item.config.getoption("gligen_baseline")
        if baseline:
            gate = spec.get("gate") or item.config.getoption("gligen_gate")
            if gate is not None and not Path(gate).is_absolute():
                local = Path(str(item.path)).parent / gate
                gate = local if local.exists() else Path(str(item.config.rootpath)) / gate
            problems += _gate_against_baseline(result, Path(baseline), Path(gate) if gate else None)
        if problems:
            pytest.fail(f"gligen run '{result.name}' ({result.run_dir}):\n  " + "\n  ".join(problems), pytrace=False)
    return outcome


def check_thresholds(metrics: Mapping[str, Any], minimum: Mapping[str, float] | None,
                     maximum: Mapping[str, float] | None) -> list[str]:  # fmt: skip
    """Return one message per violated bound (a missing or non-finite metric is a violation)."""
    problems = []
    for bound, limits in (("min", minimum or {}), ("max", maximum or {})):
        for key, limit in limits.items():
            if key not in metrics:
                have = ", ".join(sorted(k for k in metrics if not k.endswith(("/lo", "/hi"))))
                problems.append(f"{key}: not in the run's metrics (have: {have})")
                continue
            value = metrics[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"{key} = {value!r} is not a finite number")
            elif bound == "min" and value < limit:
                problems.append(f"{key} = {value:.4g} < min {limit:g}")
            elif bound == "max" and value > limit:
                problems.append(f"{key} = {value:.4g} > max {limit:g}")
    return problems


def find_baseline_run(baseline: Path, name: str) -> Path | None:
    """``baseline`` itself when it is a run directory, else the newest run under it named ``name``."""
    from gligen_eval import store

    if (baseline / store.MANIFEST).is_file():
        return baseline
    candidates = []
    for d in sorted(baseline.glob("*")):
        m = d / store.MANIFEST
        if not m.is_file():
            continue
        try:
            manifest = store.read_json(m)
        except (OSError, ValueError):
            continue
        if manifest.get("name") == name or d.name == name:
            candidates.append((str(manifest.get("created", "")), d))
    return max(candidates)[1] if candidates else None


def _gate_against_baseline(result: GligenRun, baseline: Path, gate: Path | None) -> list[str]:
    from gligen_eval import store
    from gligen_eval.reporting.compare import compare_runs, default_gate

    base_dir = find_baseline_run(baseline, result.name)
    if base_dir is None:
        return [f"no baseline run named '{result.name}' in {baseline}"]
    done = [c for c in result.checks if c.get("kind") == "gate" and c.get("baseline") == str(base_dir)
            and c.get("gate") == (str(gate) if gate else None)]  # fmt: skip
    if done:
        cmp_code, text = done[-1]["exit_code"], done[-1]["markdown"]
    else:
        rule = gate
        if rule is None:
            try:
                shared = set(store.read_json(base_dir / store.METRICS)) & set(result.metrics)
            except (OSError, ValueError):
                shared = set()
            rule = default_gate(shared)
        cmp = compare_runs(base_dir, result.run_dir, rule)
        cmp_code, text = cmp.exit_code, cmp.markdown
        result.checks.append({"kind": "gate", "baseline": str(base_dir), "gate": str(gate) if gate else None,
                              "exit_code": cmp.exit_code, "verdict": cmp.verdict, "message": cmp.message,
                              "markdown": cmp.markdown})  # fmt: skip
    if cmp_code == 0:
        return []
    what = "regression against" if cmp_code == 1 else "cannot compare with"
    return [f"{what} baseline {base_dir}:\n" + text]


# --------------------------------------------------------------------------------------------
# summary


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    runs: dict = config.stash.get(_SESSION_RUNS, {})
    if not runs:
        return
    tr = terminalreporter
    tr.write_sep("-", "gligen-eval runs")
    keys = ["box/AP", "box/AP50", "box/mIoU", "box/success", "kp/AP", "fid", "clip/global"]
    for r in runs.values():
        shown = "  ".join(f"{k}={r.metrics[k]:.4f}" for k in keys if isinstance(r.metrics.get(k), (int, float)))
        tr.write_line(f"{r.name:<20} {'reused' if r.reused else 'ran':<6} {shown}  [{r.run_dir}]")
    out_root = Path(config.getoption("gligen_out") or Path(str(config.rootpath)) / "runs" / "pytest")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        summary = out_root / "pytest-gligen.json"
        summary.write_text(json.dumps(_summary(runs.values()), indent=2) + "\n")
        tr.write_line(f"summary: {summary}")
    except OSError as e:
        tr.write_line(f"could not write the gligen summary: {e}")


def _summary(runs) -> dict[str, Any]:
    import platform

    from gligen_eval import __version__

    entries = []
    for r in runs:
        manifest = {}
        mp = r.run_dir / "manifest.json"
        if mp.is_file():
            manifest = json.loads(mp.read_text())
        entries.append({"name": r.name, "run_dir": str(r.run_dir), "reused": r.reused, "metrics": r.metrics,
                        "checks": r.checks, "config_hash": manifest.get("config_hash"),
                        "git": manifest.get("git"), "models": manifest.get("models")})  # fmt: skip
    return {"gligen_eval": __version__, "machine": {"python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor()}, "runs": entries}  # fmt: skip
