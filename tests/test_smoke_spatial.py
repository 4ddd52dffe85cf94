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
    if modality == "canny":
        _gallery_shows_the_condition_maps(rd.root, tmp_path)


def _gallery_shows_the_condition_maps(run_dir, tmp_path):
    """Each card shows the input condition and the one re-extracted from its image, as the scorer saw them."""
    import numpy as np

    from gligen_eval.imageio import pil_open
    from gligen_eval.reporting.gallery import write_gallery
    from gligen_eval.reporting.rundata import RunData

    run = RunData(run_dir)
    maps = run.condition_maps
    assert set(maps) == {s.sample_key for s in run.samples}
    for s in run.samples:
        condition, extracted = (np.asarray(pil_open(p).convert("L")) for p in maps[s.sample_key])
        assert condition.shape == extracted.shape == (s.height, s.width)
        assert condition.max() > 0  # the drawn input map has edges (faint after shrinking to 64 px)
        assert set(np.unique(extracted)) <= {0, 255}  # cv2.Canny of the generated image
    html = write_gallery(run, tmp_path / "gallery" / "index.html").read_text()
    n = len(run.samples)
    assert html.count('<div class="maps">') == n
    assert html.count('alt="input condition"') == html.count('alt="re-extracted"') == n
