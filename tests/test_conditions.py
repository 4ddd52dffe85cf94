"""Condition maps: preprocessing, given-map lookup, synthetic maps, canny, errors (no models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gligen_eval.conditions import (
    CONDITION_DEFAULTS,
    CONDITION_OPTIONS,
    condition_image,
    extract_condition,
    load_condition,
)
from gligen_eval.conditions.ade20k import ADE20K_CLASSES, ade20k_label
from gligen_eval.conditions.preprocess import center_crop
from gligen_eval.config import config_from_dict
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.layouts import load_layouts
from gligen_eval.records import GroundedObject, Layout


def layout(lid="L1", **kw) -> Layout:
    return Layout(layout_id=lid, caption="a scene", objects=(), **kw)


def save(path, arr) -> str:
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return str(path)


def test_options_and_config_keys_agree():
    assert set(CONDITION_DEFAULTS) == set(CONDITION_OPTIONS)
    g = config_from_dict({}).grounding
    assert {k: getattr(g, k) for k in CONDITION_OPTIONS} == CONDITION_DEFAULTS
    assert CONDITION_DEFAULTS["canny_low"] == 100 and CONDITION_DEFAULTS["canny_high"] == 200
    assert g.options() == {}  # defaults leave each modality's own defaults
    g = config_from_dict({"grounding": {"map": "given", "map_dir": "/m", "canny_low": 50, "hed_weights": "tiny"}}).grounding
    assert g.options() == {"map": "given", "map_dir": "/m", "canny_low": 50, "hed_weights": "tiny"}
    with pytest.raises(ConfigError, match="grounding.map"):
        config_from_dict({"grounding": {"map": "download"}})


def test_preprocessing_range_shape_and_formula(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    lay = layout(condition_map=save(tmp_path / "m.png", arr))
    x = load_condition(lay, "depth", size=40)  # same size: no resampling, the formula is exact
    assert x.shape == (3, 40, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x, (arr.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)
    y = load_condition(lay, "hed", size=24)
    assert y.shape == (3, 24, 24) and y.dtype == np.float32 and -1.0 <= y.min() and y.max() <= 1.0
    # a gray map is read as RGB: three equal channels
    g = load_condition(layout(condition_map=save(tmp_path / "g.png", arr[..., 0])), "canny", size=16)
    np.testing.assert_array_equal(g[0], g[1])
    np.testing.assert_array_equal(g[1], g[2])


def test_center_crop_then_bicubic(tmp_path):
    # 60 wide x 40 high: the crop keeps columns 10..49; the outside is a value the crop must drop
    arr = np.full((40, 60), 255, dtype=np.uint8)
    arr[:, 10:50] = 0
    x = load_condition(layout(condition_map=save(tmp_path / "w.png", arr)), "canny", size=20)
    assert np.allclose(x, -1.0, atol=1e-6)
    img = Image.new("L", (61, 40))
    assert center_crop(img).size == (40, 40)
    ref = Image.fromarray(np.arange(40 * 40, dtype=np.uint8).reshape(40, 40)).convert("RGB").resize((24, 24), Image.BICUBIC)
    got = load_condition(layout(condition_map=save(tmp_path / "r.png", np.arange(1600, dtype=np.uint8).reshape(40, 40))),
                         "normal", size=24)  # fmt: skip
    np.testing.assert_allclose(got, (np.asarray(ref).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_sem_labels_survive_nearest_resize(tmp_path):
    labels = np.zeros((64, 96), dtype=np.uint8)  # 16 px squares of distinct labels; crop keeps columns 16..79
    for i in range(4):
        for j in range(6):
            labels[i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16] = 1 + i * 6 + j * 7 % 150
    lay = layout(condition_map=save(tmp_path / "sem.png", labels))
    y = load_condition(lay, "sem", size=32)
    assert y.dtype == np.int64 and y.shape == (32, 32)
    assert set(np.unique(y)) <= set(np.unique(labels[:, 16:80]))
    np.testing.assert_array_equal(y, labels[:, 16:80][::2, ::2])  # exact 2x NEAREST downsampling
    up = load_condition(lay, "sem", size=128)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(labels[:, 16:80], 2, 0), 2, 1))


def test_sem_rejects_color_and_out_of_range(tmp_path):
    color = np.zeros((8, 8, 3), dtype=np.uint8)
    color[..., 0] = 200
    with pytest.raises(InputError, match=r"c\.png \[layout L1\]: .*in color"):
        load_condition(layout(condition_map=save(tmp_path / "c.png", color)), "sem", size=8)
    with pytest.raises(InputError, match="label 200 is outside"):
        load_condition(layout(condition_map=save(tmp_path / "o.png", np.full((8, 8), 200))), "sem", size=8)


def test_given_map_lookup_by_id_and_by_file_name(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    save(maps / "L1.png", np.full((8, 8), 255))
    save(maps / "photo7.jpg", np.zeros((8, 8)))
    opts = {"map": "given", "map_dir": str(maps)}
    assert load_condition(layout("L1"), "canny", size=8, **opts).min() == pytest.approx(1.0)
    by_image = layout("other", image_path=str(tmp_path / "photos" / "photo7.png"))  # stem match, other extension
    assert load_condition(by_image, "canny", size=8, **opts).max() == pytest.approx(-1.0)
    save(maps / "exact.png", np.full((8, 8), 255))
    by_map = layout("x", condition_map="exact.png")  # a bare file name, found in map_dir
    assert load_condition(by_map, "canny", size=8, **opts).min() == pytest.approx(1.0)
    # map_dir wins over the layout's own map; without map_dir the layout's own map is used
    own = save(tmp_path / "own.png", np.zeros((8, 8)))
    assert load_condition(layout("L1", condition_map=own), "canny", size=8, **opts).min() == pytest.approx(1.0)
    assert load_condition(layout("L1", condition_map=own), "canny", size=8, map="given").max() == pytest.approx(-1.0)
    save(maps / "L1.jpg", np.zeros((8, 8)))
    with pytest.raises(InputError, match=r"more than one map for this layout: L1\.png, L1\.jpg"):
        load_condition(layout("L1"), "canny", size=8, **opts)


def test_missing_and_bad_files_are_one_line_errors(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    with pytest.raises(InputError, match=r"\[layout nope\]: grounding.map is 'given' but there is no canny map") as e:
        load_condition(layout("nope"), "canny", size=8, map="given", map_dir=str(maps))
    assert "\n" not in str(e.value)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"bad\.png \[layout L1\]: cannot read depth map") as e:
        load_condition(layout(condition_map=str(bad)), "depth", size=8)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"gone\.png \[layout L1\]: condition map not found"):
        load_condition(layout(condition_map=str(tmp_path / "gone.png")), "depth", size=8)
    with pytest.raises(InputError, match="no real image"):
        load_condition(layout(), "canny", size=8, map="extract")
    with pytest.raises(InputError, match=r"\[layout L1\]: no canny map"):
        load_condition(layout(), "canny", size=8)  # auto, nothing given, no photo, not the sample
    with pytest.raises(ConfigError, match="unknown condition option"):
        load_condition(layout(), "canny", size=8, canny_lo=3)
    with pytest.raises(ConfigError, match="not a spatial modality"):
        load_condition(layout(), "text-box", size=8)


def test_canny_of_a_drawn_rectangle_is_its_border():
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[16:48, 20:44] = 255
    edges = extract_condition(img, "canny")
    assert edges.dtype == np.uint8 and edges.shape == (64, 64) and set(np.unique(edges)) == {0, 255}
    ys, xs = np.nonzero(edges)
    border = (np.abs(ys - 16) <= 1) | (np.abs(ys - 47) <= 1) | (np.abs(xs - 20) <= 1) | (np.abs(xs - 43) <= 1)
    assert border.all()
    assert edges[16:48, 20].any() and edges[30, 19:22].any() and edges[15:18, 30].any()
    assert not edges[24:40, 26:38].any() and not edges[:10].any()
    # the thresholds are options: a faint rectangle (L1 Sobel at most 6 * 30 = 180 < 200, at corners) has edges only below
    faint = (img // 255 * 30).astype(np.uint8)
    assert not extract_condition(faint, "canny").any()
    np.testing.assert_array_equal(extract_condition(faint, "canny", canny_low=50, canny_high=100), edges)


def test_extracted_map_from_the_layout_image(tmp_path):
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[12:36, 20:44] = 255
    lay = layout(image_path=save(tmp_path / "photo.png", img))
    x = load_condition(lay, "canny", size=48)  # auto: nothing given, a photo: extracted
    assert x.shape == (3, 48, 48)
    want = extract_condition(img, "canny")[:, 8:56]
    np.testing.assert_allclose(x[0], want / 127.5 - 1.0, atol=1e-6)
    # remembered per file state: the next seed's batch does not extract again; a changed file does
    from gligen_eval.conditions.maps import _extract_cached

    hits = _extract_cached.cache_info().hits
    np.testing.assert_array_equal(load_condition(lay, "canny", size=48), x)
    assert _extract_cached.cache_info().hits == hits + 1
    save(tmp_path / "photo.png", 255 - img)
    import os

    os.utime(tmp_path / "photo.png", ns=(1, 10**18))
    assert load_condition(lay, "canny", size=48, canny_low=10, canny_high=20).shape == (3, 48, 48)
    assert _extract_cached.cache_info().hits == hits + 1


def test_synthetic_maps_of_the_sample():
    lay = load_layouts("sample")[0]
    assert lay.source == "sample" and lay.image_path is None
    for modality in ("hed", "canny", "depth", "normal"):
        x = load_condition(lay, modality, size=64)
        assert x.shape == (3, 64, 64) and x.dtype == np.float32 and -1 <= x.min() < x.max() <= 1
    person = next(lay for lay in load_layouts("sample") if any(o.category == "person" for o in lay.objects))
    sem = load_condition(person, "sem", size=64)
    assert sem.dtype == np.int64 and ade20k_label("person") in np.unique(sem) and sem.max() <= 150
    box = Layout(layout_id="b", caption="", objects=(GroundedObject(phrase="x", box=(0.25, 0.25, 0.75, 0.75)),),
                 width=64, height=64)  # fmt: skip
    canny = load_condition(box, "canny", size=64, map="synthetic")
    assert canny[0, 16, 16:48].min() == pytest.approx(1.0) and canny[0, 32, 32] == pytest.approx(-1.0)
    depth = load_condition(box, "depth", size=64, map="synthetic")
    assert depth[0, 32, 32] > depth[0, 32, 4]  # the box is nearer (brighter) than the floor beside it
    n = load_condition(box, "normal", size=64, map="synthetic")  # (n*0.5+0.5)*255 read back is n itself
    np.testing.assert_allclose(n[:, 4, 4], [0, 0, 1], atol=0.01)
    assert n[0, 32, 20] < -0.3 and n[0, 32, 44] > 0.3  # the two faces tilt left and right


def test_ade20k_names():
    assert len(ADE20K_CLASSES) == 150 and len(set(ADE20K_CLASSES)) == 150
    assert ade20k_label("wall") == 1 and ade20k_label("person") == 13 and ade20k_label("flag") == 150
    assert ade20k_label("unicorn") == 0


def test_condition_image_is_the_model_input_before_scaling(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    lay = layout(condition_map=save(tmp_path / "m.png", arr))
    for modality in ("canny", "normal"):
        img = condition_image(lay, modality, size=24)
        x = load_condition(lay, modality, size=24)
        assert img.dtype == np.uint8 and img.shape == ((24, 24, 3) if modality == "normal" else (24, 24))
        want = x.transpose(1, 2, 0) if modality == "normal" else x[0]
        np.testing.assert_allclose(img / 127.5 - 1.0, want, atol=1e-6)
    labels = np.zeros((16, 16), np.uint8)
    labels[4:12, 4:12] = 42
    sem = layout("s", condition_map=save(tmp_path / "s.png", labels))
    np.testing.assert_array_equal(condition_image(sem, "sem", size=16), labels)


def test_diode_style_float_normals_and_npy_maps(tmp_path):
    n = np.zeros((8, 8, 3), dtype=np.float32)  # 0 where there is no normal, as DIODE ships them
    n[:4] = (0.0, 0.0, 1.0)
    n[4:, :4] = (0.6, -0.8, 0.0)
    np.save(tmp_path / "n.npy", n)
    x = load_condition(layout(condition_map=str(tmp_path / "n.npy")), "normal", size=8)
    np.testing.assert_allclose(x.transpose(1, 2, 0), np.round((n * 0.5 + 0.5) * 255) / 127.5 - 1, atol=1e-6)
    np.save(tmp_path / "L1.npy", np.full((8, 8), 255, dtype=np.uint8))  # uint8 .npy maps, found by id
    assert load_condition(layout("L1"), "canny", size=8, map_dir=str(tmp_path)).min() == pytest.approx(1.0)
    np.save(tmp_path / "bad.npy", n * 3)
    with pytest.raises(InputError, match=r"bad\.npy \[layout L1\]: a float normal map holds unit normals"):
        load_condition(layout(condition_map=str(tmp_path / "bad.npy")), "normal", size=8)
    np.save(tmp_path / "f.npy", n)
    with pytest.raises(InputError, match="uint8 HxW or HxWx3 array, got float32"):
        load_condition(layout(condition_map=str(tmp_path / "f.npy")), "depth", size=8)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy \[layout L1\]: cannot read normal map"):
        load_condition(layout(condition_map=str(tmp_path / "obj.npy")), "normal", size=8)
