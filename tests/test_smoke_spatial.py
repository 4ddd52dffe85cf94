"""Every spatial modality runs end to end offline from its smoke config and writes its cond/* keys."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gligen_eval import runner, store
from gligen_eval.config import load_config
from gligen_eval.scoring.condition import metric_names

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMALL = ["layouts.limit=3", "sampler.steps=2", "sampler.batch_size=3", "scoring.bootstrap=20", "scoring.bootstrap_ap=5"]
# canny needs no extractor network: it stays in the default suite; the others build a tiny one
MODALITIES = ["canny", *(pytest.param(m, marks=pytest.mark.slow) for m in ("hed", "depth", "normal", "sem"))]


@pytest.mark.parametrize("modality", MODALITIES)
def test_spatial_smoke_config_runs_and_writes_condition_scores(modality, tmp_path):
    cfg = load_config(BENCH / f"smoke-{modality}.yaml", [*SMALL, f"out={tmp_path / modality}"])
    rd = store.RunDir(runner.run(cfg, progress=False))
    manifest, metrics = rd.manifest(), rd.metrics()
    assert manifest["resolved"]["modality"] == modality
    assert manifest["resolved"]["sampler"]["alpha"] == cfg.sampler.alpha
    keys = [f"cond/{name}" for name in metric_names(modality)]
    assert keys, modality
    missing = [k for k in keys if k not in metrics]
    assert missing == []
    assert all(isinstance(metrics[k], float) and math.isfinite(metrics[k]) for k in keys)
    assert len(rd.rows("cond.jsonl")) == metrics["n_samples"] == 3
