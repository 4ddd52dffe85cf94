"""pytest plugin: run gligen-eval configs from tests, assert thresholds, gate against a baseline.

Registered through the ``pytest11`` entry point, so it is active wherever gligen-eval is installed.

Options (group ``gligen``)::

    --gligen-model MODEL     the candidate every gligen test runs: an adapter file written by
                             save_adapter, a diffusers folder, a cached hub id, an official GLIGEN
                             checkpoint, or "tiny"
    --gligen-base BASE       the model an adapter plugs into (default: the base the adapter records),
                             or model.base of an official checkpoint
    --gligen-modality M      the candidate's modality when its file does not say (folders, hub ids,
                             official checkpoints); suites of another modality skip
    --gligen-baseline DIR    gate every gligen test against this run (or a folder holding runs by name)
    --gligen-gate GATE.yaml  gate used with --gligen-baseline (default: the built-in gate)
    --gligen-out DIR         where run directories go (default: ~/.cache/gligen-eval/runs)
    --gligen-limit N         layouts.limit for every run
    --gligen-config CFG      config for tests whose marker names none (default: the offline demo config)
    --gligen-set KEY=VALUE   override for every run (repeatable; applied last)

Marker (whitelisted keys; anything else is a usage error)::

    @pytest.mark.gligen(config="coco_box.yaml", min={"box/AP": 0.2}, max={"fid": 30},
                        set=["sampler.steps=25"], name="coco_box", gate="gate.yaml")
    def test_coco_box(gligen_run):
        assert gligen_run.metrics["n_samples"] > 0

A marked test gets the ``gligen_run`` fixture even when it does not ask for it; the thresholds and
the baseline gate are checked after the test body. ``config`` and ``gate`` paths are relative to
the test file. A τ-sweep config gives a run whose ``points`` are the sweep's runs; thresholds and
the gate apply to every point. Fixtures: ``gligen_run`` (a :class:`GligenRun`) and
``gligen_runner`` (the function that runs a config; override it in a conftest to plug in another
runner).

A finished run is reused only when its directory matches the resolved config *and* the code that
made it: the directory name hashes the config with the gligen-eval version, the git commit and a
digest of the package's files, so editing the scoring code never passes on stale results.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from gligen_eval.pytest_candidate import Candidate, code_identity, default_out_root, resolve_candidate

MARKER_NAME = "gligen"
MARKER_KEYS = ("config", "min", "max", "set", "gate", "name")

_SESSION_RUNS = pytest.StashKey[dict]()
_SESSION_STATE = pytest.StashKey[dict]()
_ITEM_RUN = pytest.StashKey["GligenRun"]()


@dataclass
class GligenRun:
    """A finished run as seen by a test: its directory, resolved config and metrics.

    For a τ sweep, ``run_dir`` is the sweep folder, ``metrics`` is empty and ``points`` holds one
    run per τ (each with its ``tau``).
    """

    name: str
    run_dir: Path
    config: Any  # gligen_eval.config.RunConfig
    metrics: dict[str, Any]
    reused: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)
    points: list["GligenRun"] = field(default_factory=list)
    tau: float | None = None

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __contains__(self, key: str) -> bool:
        return key in self.metrics


# --------------------------------------------------------------------------------------------
# options and marker


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gligen", "gligen-eval benchmarks")
    g.addoption("--gligen-model", default=None, metavar="MODEL",
                help="the candidate for every gligen run: an adapter .safetensors (save_adapter), a diffusers "
                     "folder, a cached hub id, an official GLIGEN checkpoint, or 'tiny'")  # fmt: skip
    g.addoption("--gligen-base", default=None, metavar="BASE",
                help="the model an adapter given to --gligen-model plugs into (default: the base the adapter "
                     "records), or model.base of an official checkpoint")  # fmt: skip
    g.addoption("--gligen-modality", default=None, metavar="MODALITY",
                help="the candidate's modality when its file does not record it; suites of another modality skip")
    g.addoption("--gligen-baseline", default=None, metavar="DIR",
                help="baseline run directory, or a folder holding baseline runs by name; "
                     "every gligen test is also gated against it")  # fmt: skip
    g.addoption("--gligen-gate", default=None, metavar="GATE.yaml",
                help="gate file used with --gligen-baseline (default: the built-in gate)")
    g.addoption("--gligen-out", default=None, metavar="DIR",
                help="folder for run directories (default: ~/.cache/gligen-eval/runs, or $XDG_CACHE_HOME/gligen-eval/runs)")
    g.addoption("--gligen-limit", default=None, type=int, metavar="N", help="layouts.limit for every gligen run")
    g.addoption("--gligen-config", default=None, metavar="CONFIG.yaml",
                help="config for gligen tests whose marker names none (default: the offline demo config)")
    g.addoption("--gligen-set", action="append", default=[], metavar="KEY=VALUE",
                help="config override for every gligen run (repeatable, applied last)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gligen(config=None, min=None, max=None, set=None, gate=None, name=None): run a gligen-eval config "
        "(through the gligen_run fixture) and assert metric thresholds; min/max map metric keys to bounds",
    )
    config.stash[_SESSION_RUNS] = {}
    config.stash[_SESSION_STATE] = {"candidate": resolve_candidate(config.getoption("gligen_model"), config.getoption("gligen_base"), config.getoption("gligen_modality")), "skipped": [], "code": None}


def _out_root(config: pytest.Config) -> Path:
    given = config.getoption("gligen_out")
    return Path(given).expanduser().resolve() if given else default_out_root()


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
    _skip_other_modality(request.config, cfg, name)
    result = _run_or_reuse(request.config, cfg, name, gligen_runner)
    request.node.stash[_ITEM_RUN] = result
    return result


def _session_code(config: pytest.Config) -> dict[str, Any]:
    state = config.stash[_SESSION_STATE]
    if state["code"] is None:
        state["code"] = code_identity()
    return state["code"]


def _resolve_config(config: pytest.Config, spec: Mapping[str, Any], test_dir: Path):
    from gligen_eval.config import config_from_dict, load_config
    from gligen_eval.errors import GligenEvalError
    from gligen_eval.records import stable_hash

    cfg_path = spec.get("config") or config.getoption("gligen_config")
    if cfg_path is not None:
        p = Path(cfg_path)
        if not p.is_absolute():
            local = test_dir / p
            p = local if local.exists() else Path(str(config.rootpath)) / p
    candidate: Candidate | None = config.stash[_SESSION_STATE]["candidate"]
    overrides = list(spec.get("set") or [])
    if candidate is not None:
        overrides += [f"{k}={json.dumps(v)}" for k, v in candidate.overrides.items()]
    overrides += list(config.getoption("gligen_set") or [])
    if config.getoption("gligen_limit") is not None:
        overrides.append(f"layouts.limit={int(config.getoption('gligen_limit'))}")
    try:
        cfg = load_config(p if cfg_path is not None else None, overrides)
    except GligenEvalError as e:
        pytest.fail(f"gligen config: {e}", pytrace=False)
    name = str(spec.get("name") or (Path(cfg_path).stem if cfg_path is not None else cfg.name))
    if candidate is not None and candidate.kind == "checkpoint" and cfg.model.base is None:
        pytest.fail(f"gligen run '{name}': --gligen-model {candidate.model} is an official GLIGEN checkpoint, which "
                    "holds the UNet only; name the Stable Diffusion model for the other parts with --gligen-base",
                    pytrace=False)  # fmt: skip
    data = cfg.to_dict()
    data["name"] = name
    key = stable_hash([data, _session_code(config)], length=8)
    data["out"] = str(_out_root(config) / f"{name}-{key}")
    return config_from_dict(data), name


def _skip_other_modality(config: pytest.Config, cfg, name: str) -> None:
    """A suite that evaluates another modality than the candidate's does not apply to it: skip, saying so."""
    candidate: Candidate | None = config.stash[_SESSION_STATE]["candidate"]
    wanted = cfg.model.modality
    if candidate is None or candidate.modality is None or wanted is None or wanted == candidate.modality:
        return
    reason = f"suite '{name}' evaluates {wanted} models; the candidate {candidate.model} is a {candidate.modality} model"
    config.stash[_SESSION_STATE]["skipped"].append(reason)
    pytest.skip(reason)


def _finished(cfg) -> bool:
    """Whether ``cfg.out`` holds a finished run of exactly ``cfg`` (every point of a sweep)."""
    from gligen_eval import store
    from gligen_eval.records import stable_hash
    from gligen_eval.runner import SWEEP_INDEX, sweep_points

    def done(c) -> bool:
        rd = store.RunDir(c.out)
        try:
            return rd.is_complete() and rd.exists() and rd.manifest().get("config_hash") == stable_hash(c.to_dict())
        except (OSError, ValueError):
            return False

    if cfg.sweep.tau:
        return (Path(cfg.out) / SWEEP_INDEX).is_file() and all(done(sub) for _, sub in sweep_points(cfg))
    return done(cfg)


def _read_run(name: str, run_dir: Path, cfg, reused: bool, tau: float | None = None) -> GligenRun:
    from gligen_eval import store

    metrics_path = Path(run_dir) / store.METRICS
    if not metrics_path.is_file():
        pytest.fail(f"gligen run '{name}' wrote no {store.METRICS} in {run_dir}", pytrace=False)
    return GligenRun(name=name, run_dir=Path(run_dir), config=cfg, metrics=store.read_json(metrics_path),
                     reused=reused, tau=tau)  # fmt: skip


def _run_or_reuse(config: pytest.Config, cfg, name: str, runner: Callable[..., Path]) -> GligenRun:
    from gligen_eval.errors import GligenEvalError
    from gligen_eval.records import stable_hash
    from gligen_eval.runner import sweep_points

    cache: dict = config.stash[_SESSION_RUNS]
    config_hash = stable_hash(cfg.to_dict())
    if config_hash in cache:
        return cache[config_hash]
    reused = _finished(cfg)
    if reused:
        run_dir = Path(cfg.out)
    else:
        try:
            run_dir = Path(runner(cfg, resume=True))
        except GligenEvalError as e:
            pytest.fail(f"gligen run '{name}' failed: {e}", pytrace=False)
    if cfg.sweep.tau:
        points = [_read_run(name, Path(sub.out), sub, reused, tau) for tau, sub in sweep_points(cfg)]
        result = GligenRun(name=name, run_dir=run_dir, config=cfg, metrics={}, reused=reused, points=points)
    else:
        result = _read_run(name, run_dir, cfg, reused)
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
        problems = []
        for run in result.points or [result]:
            where = f"τ={run.tau:g}: " if run.tau is not None else ""
            problems += [where + p for p in check_thresholds(run.metrics, spec.get("min"), spec.get("max"))]
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


def _run_name_and_time(d: Path) -> tuple[str | None, str] | None:
    """``(name, created)`` of a run directory or a sweep folder, None for anything else."""
    from gligen_eval import store
    from gligen_eval.runner import SWEEP_INDEX

    try:
        if (d / store.MANIFEST).is_file():
            m = store.read_json(d / store.MANIFEST)
            return m.get("name"), str(m.get("created", ""))
        if (d / SWEEP_INDEX).is_file():
            return store.read_json(d / SWEEP_INDEX).get("name"), f"{(d / SWEEP_INDEX).stat().st_mtime:020.6f}"
    except (OSError, ValueError, AttributeError):
        return None
    return None


def find_baseline_run(baseline: Path, name: str) -> Path | None:
    """``baseline`` itself when it is a run directory (or sweep folder), else the newest one under it named ``name``."""
    if _run_name_and_time(baseline) is not None:
        return baseline
    candidates = []
    for d in sorted(baseline.glob("*")):
        info = _run_name_and_time(d) if d.is_dir() else None
        if info is not None and (info[0] == name or d.name == name):
            candidates.append((info[1], d))
    return max(candidates)[1] if candidates else None


def _baseline_points(base_dir: Path, result: GligenRun) -> list[tuple[GligenRun, Path | None, str]]:
    """``(candidate run, baseline run dir or None, label)`` pairs: the run itself, or every τ of a sweep."""
    from gligen_eval import store
    from gligen_eval.runner import SWEEP_INDEX

    if not result.points:
        return [(result, base_dir, "")]
    try:
        index = store.read_json(base_dir / SWEEP_INDEX)
        by_tau = {float(p["tau"]): base_dir / p["run"] for p in index["points"]}
    except (OSError, ValueError, KeyError, TypeError):
        by_tau = {}
    return [(p, by_tau.get(float(p.tau)), f"τ={p.tau:g}: ") for p in result.points]


def _gate_against_baseline(result: GligenRun, baseline: Path, gate: Path | None) -> list[str]:
    from gligen_eval import store
    from gligen_eval.reporting.compare import compare_runs, default_gate

    base_root = find_baseline_run(baseline, result.name)
    if base_root is None:
        return [f"no baseline run named '{result.name}' in {baseline}"]
    problems = []
    for run, base_dir, label in _baseline_points(base_root, result):
        if base_dir is None or not base_dir.is_dir():
            problems.append(f"{label}the baseline {base_root} has no run for this point")
            continue
        done = [c for c in result.checks if c.get("kind") == "gate" and c.get("baseline") == str(base_dir)
                and c.get("gate") == (str(gate) if gate else None) and c.get("tau") == run.tau]  # fmt: skip
        if done:
            cmp_code, text = done[-1]["exit_code"], done[-1]["markdown"]
        else:
            rule = gate
            if rule is None:
                try:
                    shared = set(store.read_json(base_dir / store.METRICS)) & set(run.metrics)
                except (OSError, ValueError):
                    shared = set()
                rule = default_gate(shared)
            cmp = compare_runs(base_dir, run.run_dir, rule)
            cmp_code, text = cmp.exit_code, cmp.markdown
            result.checks.append({"kind": "gate", "baseline": str(base_dir), "gate": str(gate) if gate else None,
                                  "tau": run.tau, "exit_code": cmp.exit_code, "verdict": cmp.verdict,
                                  "message": cmp.message, "markdown": cmp.markdown})  # fmt: skip
        if cmp_code != 0:
            what = "regression against" if cmp_code == 1 else "cannot compare with"
            problems.append(f"{label}{what} baseline {base_dir}:\n" + text)
    return problems


# --------------------------------------------------------------------------------------------
# session end


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A candidate that no suite evaluated is a failed check, not a pass."""
    state = session.config.stash.get(_SESSION_STATE, None)
    if state and state["candidate"] is not None and state["skipped"] and not session.config.stash[_SESSION_RUNS]:
        state["nothing_ran"] = True
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    runs: dict = config.stash.get(_SESSION_RUNS, {})
    state = config.stash.get(_SESSION_STATE, {})
    tr = terminalreporter
    if state.get("nothing_ran"):
        cand = state["candidate"]
        tr.write_sep("-", "gligen-eval runs")
        tr.write_line(f"no suite evaluates a {cand.modality} model: nothing checked the candidate {cand.model}", red=True)
    if not runs:
        return
    tr.write_sep("-", "gligen-eval runs")
    from gligen_eval.reporting.metricinfo import headline_keys

    keys = headline_keys()
    for r in runs.values():
        for p in r.points or [r]:
            shown = "  ".join(f"{k}={p.metrics[k]:.4f}" for k in keys if isinstance(p.metrics.get(k), (int, float)))
            label = r.name + (f" τ={p.tau:g}" if p.tau is not None else "")
            tr.write_line(f"{label:<20} {'reused' if r.reused else 'ran':<6} {shown}  [{p.run_dir}]")
    for r in runs.values():
        for c in r.checks:
            if c.get("kind") == "gate":
                tr.write_line(f"gate {r.name}" + (f" τ={c['tau']:g}" if c.get("tau") is not None else "")
                              + f": {c['verdict']} ({c['message']})")  # fmt: skip
    out_root = _out_root(config)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        summary = out_root / "pytest-gligen.json"
        summary.write_text(json.dumps(_summary(config, runs.values()), indent=2) + "\n")
        tr.write_line(f"summary: {summary}")
    except OSError as e:
        tr.write_line(f"could not write the gligen summary: {e}")


def _summary(config: pytest.Config, runs) -> dict[str, Any]:
    import platform

    from gligen_eval import __version__

    state = config.stash.get(_SESSION_STATE, {})
    cand: Candidate | None = state.get("candidate")
    entries = []
    for r in runs:
        for p in r.points or [r]:
            manifest = {}
            mp = p.run_dir / "manifest.json"
            if mp.is_file():
                manifest = json.loads(mp.read_text())
            entries.append({"name": r.name, "tau": p.tau, "run_dir": str(p.run_dir), "reused": r.reused,
                            "metrics": p.metrics, "checks": [c for c in r.checks if c.get("tau") == p.tau],
                            "config_hash": manifest.get("config_hash"), "git": manifest.get("git"),
                            "models": manifest.get("models"), "config": p.config.to_dict()})  # fmt: skip
    return {"gligen_eval": __version__, "code": state.get("code"),
            "candidate": None if cand is None else {"model": cand.model, "kind": cand.kind, "modality": cand.modality,
                                                    "overrides": cand.overrides},
            "skipped": list(state.get("skipped", [])),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "processor": platform.processor()}, "runs": entries}  # fmt: skip
