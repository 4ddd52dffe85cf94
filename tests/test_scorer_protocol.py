"""The Scorer protocol: a new metric is its scorer and its tests.

``MeanLevel`` below is a whole metric written the way a user writes one: it plugs into a real run
through the config's ``scorers`` mapping, and its key reaches ``metrics.json``, the leaderboard and
``compare`` with the direction and decimals it declares, without any edit in ``gligen_eval/``.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gligen_eval.cli import main
from gligen_eval.scoring import protocol
from gligen_eval.scoring.protocol import KeySpec, ScoreContext, ScoreOutput, Scorer

SMALL = ["--set", "layouts.limit=3", "--set", "sampler.steps=2", "--set", "sampler.batch_size=2",
         "--set", "sampler.height=32", "--set", "sampler.width=32", "--no-progress"]  # fmt: skip


class MeanLevel(Scorer):
    """The mean gray level of the images times ``scale``: lower is better, one decimal."""

    name = "toy_level"
    keys = (KeySpec("toy/level", higher_is_better=False, decimals=1),)

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        levels = []
        for s in ctx.samples:
            with Image.open(ctx.rd.root / s.image) as im:
                levels.append(float(np.asarray(im.convert("L"), dtype=np.float64).mean()))
        self.described["toy_level"] = {"name": "mean level", "fingerprint": "toy-1"}
        return ScoreOutput({"toy/level": float(np.mean(levels)) * self.options.get("scale", 1.0)})


TARGET = f"{__name__}:MeanLevel"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("protocol") / "run"
    assert main(["run", "--out", str(out), *SMALL, "--set", f'scorers={{"{TARGET}": {{"scale": 2.0}}}}']) == 0
    return out


def test_a_user_scorer_writes_its_key_into_a_real_run(toy_run):
    metrics = json.loads((toy_run / "metrics.json").read_text())
    samples = [json.loads(line) for line in (toy_run / "samples.jsonl").read_text().splitlines()]
    expected = 2.0 * np.mean([np.asarray(Image.open(toy_run / s["image"]).convert("L"), dtype=np.float64).mean()
                              for s in samples])  # fmt: skip
    assert metrics["toy/level"] == pytest.approx(expected, rel=1e-12)
    assert "box/AP" in metrics  # the built-in scorers ran as before
    manifest = json.loads((toy_run / "manifest.json").read_text())
    entry = manifest["models"]["toy_level"]
    assert (entry["name"], entry["fingerprint"]) == ("mean level", "toy-1")
    assert [k["pattern"] for k in entry["keys"]] == ["toy/level"]  # recorded for readers of the run


def test_readers_take_the_specs_from_the_manifest_and_import_nothing(toy_run, monkeypatch):
    """Another process reading the run: the key's direction and decimals come from the manifest; a
    module a run directory names is never imported."""
    from gligen_eval.reporting import metricinfo as mi
    from gligen_eval.reporting.rundata import RunData

    monkeypatch.setattr(protocol, "_USER_SCORERS", [])
    monkeypatch.setattr(protocol, "_RECORDED_SPECS", [])
    protocol._key_spec.cache_clear()
    assert protocol.key_spec("toy/level") is None
    manifest = json.loads((toy_run / "manifest.json").read_text())
    manifest["config"]["scorers"]["planted_module_xyz:Evil"] = {}
    (toy_run / "manifest.json").write_text(json.dumps(manifest))
    try:
        RunData(toy_run)
        assert not mi.higher_is_better("toy/level") and mi.decimals("toy/level") == 1
        assert "planted_module_xyz" not in sys.modules
    finally:
        del manifest["config"]["scorers"]["planted_module_xyz:Evil"]
        (toy_run / "manifest.json").write_text(json.dumps(manifest))
        protocol._key_spec.cache_clear()


def test_reports_and_compare_read_the_declared_spec(toy_run, tmp_path, capsys):
    from gligen_eval.reporting import metricinfo as mi

    assert not mi.higher_is_better("toy/level") and mi.decimals("toy/level") == 1
    assert main(["report", str(toy_run), "--out", str(tmp_path / "rep")]) == 0
    board = (tmp_path / "rep" / "leaderboard.md").read_text()
    value = json.loads((toy_run / "metrics.json").read_text())["toy/level"]
    assert "toy/level" in board and f"{value:.1f}" in board
    capsys.readouterr()
    assert main(["compare", str(toy_run), str(toy_run), "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["toy/level"]["baseline"] == pytest.approx(value)


def test_every_key_a_run_writes_is_declared(toy_run):
    """Keys are declared once, by the scorer that writes them (counts aside)."""
    metrics = json.loads((toy_run / "metrics.json").read_text())
    undeclared = [k for k in metrics if not k.startswith("n_") and protocol.key_spec(k.removesuffix("/lo").removesuffix("/hi")) is None]
    assert undeclared == []


def test_a_new_builtin_scorer_is_one_module_in_the_scorers_package(tmp_path, monkeypatch):
    from gligen_eval.config import config_from_dict
    from gligen_eval.scoring import scorers

    pkg = tmp_path / "extra_scorers"
    pkg.mkdir()
    (pkg / "zz_constant.py").write_text(textwrap.dedent('''
        from gligen_eval.scoring.protocol import KeySpec, ScoreOutput, Scorer

        class Constant(Scorer):
            name = "zz_constant"
            order = 999
            keys = (KeySpec("zz/constant", decimals=2),)

            def score(self, ctx):
                return ScoreOutput({"zz/constant": float(self.options["value"])})
    '''))
    monkeypatch.setattr(scorers, "__path__", [*scorers.__path__, str(pkg)])
    protocol._builtin_scorers.cache_clear()
    protocol._key_spec.cache_clear()
    try:
        assert protocol.scorer_names()[-1] == "zz_constant"
        assert protocol.key_spec("zz/constant").decimals == 2
        cfg = config_from_dict({"scorers": {"zz_constant": {"value": 3}}})
        chosen = [s for s in protocol.configured_scorers(cfg) if s.name == "zz_constant"]
        assert len(chosen) == 1 and chosen[0].score(None).metrics == {"zz/constant": 3.0}
        assert not any(s.name == "zz_constant" for s in protocol.configured_scorers(config_from_dict({})))
    finally:
        sys.modules.pop("gligen_eval.scoring.scorers.zz_constant", None)
        protocol._builtin_scorers.cache_clear()
        protocol._key_spec.cache_clear()


def test_builtin_scorers_in_order_and_key_patterns():
    assert protocol.scorer_names() == ["detector", "extra_detectors", "pose", "fid", "quality", "clip", "condition",
                                       "comp", "inpaint"]  # fmt: skip
    spec = protocol.key_spec("box@owl/AP50")
    assert spec is not None and spec.pattern == "box@{}/AP50"
    assert protocol.key_spec("box@a/b/AP50") is None  # {} is one name, not a path
    assert protocol.key_spec("box/AP").coco and protocol.key_spec("box/AP").gate == ("max_drop", 0.01)
    assert not protocol.key_spec("fid").higher_is_better
    assert not protocol.key_spec("cond/depth_rmse").higher_is_better and protocol.key_spec("cond/sem_miou").higher_is_better
    assert "box/AP" in protocol.headline_keys() and "fid" in protocol.headline_keys()


def test_bad_scorer_targets_are_one_line_config_errors():
    from gligen_eval.config import config_from_dict
    from gligen_eval.errors import ConfigError

    for target, words in (("nope", "neither a built-in scorer"), ("json:nothing_here", "cannot load"),
                          ("json:dumps", "is not a gligen_eval.scoring.protocol.Scorer"),
                          ("pose", "configured by its own section")):  # fmt: skip
        with pytest.raises(ConfigError, match=words):
            protocol.configured_scorers(config_from_dict({"scorers": {target: {}}}))
    with pytest.raises(ConfigError, match="options of .* must be a mapping"):
        protocol.configured_scorers(config_from_dict({"scorers": {TARGET: 3}}))
