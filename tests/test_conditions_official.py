"""The official GLIGEN inference maps (../shared) through load_condition and the image-folder source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gligen_eval.conditions import load_condition
from gligen_eval.layouts import load_layouts
from gligen_eval.records import Layout

MAP_KEYS = {"hed": "hed_image", "canny": "canny_image", "depth": "depth", "normal": "normal", "sem": "sem"}


@pytest.fixture(scope="module")
def examples(official_dir):
    d = official_dir / "inference_examples"
    if not (d / "examples.json").is_file():
        pytest.skip(f"official inference examples not present ({d})")
    rows = json.loads((d / "examples.json").read_text())["examples"]
    out = {r["modality"]: (d / r[MAP_KEYS[r["modality"]]], r) for r in rows if r["modality"] in MAP_KEYS}
    assert set(out) == set(MAP_KEYS)
    return out


def _load(examples, modality, size=512):
    path, row = examples[modality]
    return load_condition(Layout(layout_id=modality, caption=row["prompt"], objects=(), condition_map=str(path)),
                          modality, size=size)  # fmt: skip


@pytest.mark.parametrize("modality", ["hed", "canny", "depth", "normal"])
def test_official_maps_preprocess_to_the_model_range(examples, modality):
    x = _load(examples, modality)
    assert x.shape == (3, 512, 512) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    if modality in ("hed", "canny"):  # thin bright edges on black
        assert np.median(x) == pytest.approx(-1.0, abs=0.05) and 0.005 < (x[0] > 0).mean() < 0.4
    if modality == "hed":  # 800 x 600 gray: crop to 600 x 600, then bicubic to 512
        src = Image.open(examples["hed"][0])
        assert src.size == (800, 600)
        ref = src.convert("RGB").crop((100, 0, 700, 600)).resize((512, 512), Image.BICUBIC)
        np.testing.assert_allclose(x, (np.asarray(ref).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)
    if modality == "normal":  # (n*0.5+0.5)*255 read back: unit vectors, or 0 (128 gray) where there is no normal
        norm = np.linalg.norm(x, axis=0)
        assert np.median(norm[norm > 0.5]) == pytest.approx(1.0, abs=0.05)
        assert np.mean((norm < 0.1) | (np.abs(norm - 1.0) < 0.1)) > 0.65  # blends only along the borders


def test_official_sem_map_keeps_its_labels(examples):
    path, row = examples["sem"]
    raw = np.asarray(Image.open(path).convert("L"))
    y = _load(examples, "sem")
    assert y.shape == (512, 512) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(np.unique(raw)) and y.max() <= 150
    crop = raw[:, 86:598]  # 683 x 512: the centered 512 columns; same size, so NEAREST is the identity
    np.testing.assert_array_equal(y, crop)
    assert len(np.unique(y)) >= 10 and "NEAREST" in row["note"]


def test_official_maps_through_an_image_folder_source(examples, tmp_path):
    lines = [json.dumps({"id": m, "caption": row["prompt"], "map": str(path)}) for m, (path, row) in examples.items()]
    (tmp_path / "maps.jsonl").write_text("\n".join(lines) + "\n")
    layouts = {lay.layout_id: lay for lay in load_layouts(str(tmp_path))}
    assert set(layouts) == set(MAP_KEYS)
    for m, lay in layouts.items():
        got = load_condition(lay, m, size=64, map="given")
        assert got.shape == ((64, 64) if m == "sem" else (3, 64, 64))
        np.testing.assert_array_equal(got, _load(examples, m, size=64))
