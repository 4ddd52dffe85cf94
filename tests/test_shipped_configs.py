"""Every YAML config shipped in benchmarks/ parses, validates and names what it runs."""

from pathlib import Path

import pytest

from gligen_eval.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "benchmarks").rglob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    if path.parent.name == "full":  # real-weight protocols: never a random model or detector
        assert cfg.model.name != "tiny"
        assert not cfg.detector.weights.endswith((".yaml", ".yml"))
