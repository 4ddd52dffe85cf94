"""Layout sources of the spatial modalities: image folders (JSON Lines rows) and ADE20K-style folders."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from gligen_eval.conditions import load_condition
from gligen_eval.errors import InputError
from gligen_eval.layouts import LayoutWarning, load_jsonl, load_layouts, resolve_source, write_jsonl
from gligen_eval.records import GroundedObject, Layout

pytestmark = pytest.mark.filterwarnings("ignore::gligen_eval.layouts.common.LayoutWarning")


def png(path, arr) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return path.name


def rows(path, *items) -> None:
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in items))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "set"
    png(d / "a.jpg", np.zeros((8, 12, 3)))
    png(d / "a_canny.png", np.full((8, 12), 255))
    png(d / "b.png", np.zeros((8, 8, 3)))
    rows(d / "captions.jsonl",
         {"id": "a", "caption": "a robot", "image": "a.jpg", "map": "a_canny.png"},
         "",
         {"id": 7, "caption": "a bird", "image": "b.png", "boxes": [{"phrase": "bird", "box": [0.1, 0.2, 0.5, 0.6]}],
          "width": 8, "height": 8})  # fmt: skip
    return d


def test_image_folder_source(folder):
    for source in (str(folder), str(folder / "captions.jsonl"), f"images:{folder}"):
        assert resolve_source(source)[0] == "images"
        a, b = load_layouts(source)
        assert (a.layout_id, a.caption, a.objects, a.source) == ("a", "a robot", (), "images")
        assert a.image_path == str(folder / "a.jpg") and a.condition_map == str(folder / "a_canny.png")
        assert b.layout_id == "7" and b.condition_map is None and b.phrases == ["bird"] and b.width == 8
    assert len(load_layouts(str(folder), limit=1)) == 1
    # given map: the row's own; the other layout falls back to extraction from its photo
    assert load_condition(a, "canny", size=8).min() == pytest.approx(1.0)
    assert load_condition(b, "canny", size=8).max() == pytest.approx(-1.0)  # a black photo has no edges


def test_image_folder_paths_relative_to_images_dir(tmp_path, folder):
    rows(tmp_path / "list.jsonl", {"id": "a", "caption": "x", "image": "a.jpg"})
    with pytest.raises(InputError, match=r"list\.jsonl \[line 1, layout a\]: image file not found"):
        load_layouts(str(tmp_path / "list.jsonl"))
    (lay,) = load_layouts(str(tmp_path / "list.jsonl"), images_dir=str(folder))
    assert lay.image_path == str(folder / "a.jpg")


@pytest.mark.parametrize("row, message", [
    ({"id": "x", "caption": "c"}, "needs 'image'"),
    ({"id": "x", "caption": "c", "image": "a.jpg", "mask": "m.png"}, "unknown key"),
    ({"caption": "c", "image": "a.jpg"}, "missing 'id'"),
    ({"id": "x", "image": "a.jpg"}, "missing 'caption'"),
    ({"id": "x", "caption": "c", "image": "a.jpg", "boxes": [{"phrase": "p", "box": [0.5, 0, 0.1, 1]}]}, r"boxes\[0\]"),
    ({"id": "x", "caption": "c", "map": 3}, "'map' must be a file path"),
])  # fmt: skip
def test_image_folder_row_errors(folder, row, message):
    rows(folder / "captions.jsonl", {"id": "a", "caption": "ok", "image": "a.jpg"}, row)
    with pytest.raises(InputError, match=r"captions\.jsonl \[line 2.*" + message) as e:
        load_layouts(str(folder))
    assert "\n" not in str(e.value)


def test_image_folder_duplicates_and_ambiguous_folders(folder):
    rows(folder / "captions.jsonl", {"id": "a", "caption": "x", "image": "a.jpg"}, {"id": "a", "caption": "y", "image": "b.png"})
    with pytest.raises(InputError, match="also on line 1"):
        load_layouts(str(folder))
    rows(folder / "more.jsonl", {"id": "c", "caption": "x", "image": "a.jpg"})
    with pytest.raises(InputError, match=r"exactly one \.jsonl.*2 \.jsonl files"):
        load_layouts(str(folder))


def test_our_jsonl_format_still_reads_and_carries_condition_map(tmp_path):
    obj = GroundedObject(phrase="cat", box=(0.1, 0.1, 0.5, 0.5))
    lay = Layout(layout_id="k", caption="c", objects=(obj,), condition_map="/maps/k.png")
    assert Layout.from_dict(lay.to_dict()) == lay and lay.to_dict()["condition_map"] == "/maps/k.png"
    plain = Layout(layout_id="k", caption="c", objects=(obj,))
    assert "condition_map" not in plain.to_dict() and plain.content_hash() != lay.content_hash()
    write_jsonl([lay], tmp_path / "ours.jsonl")
    assert resolve_source(str(tmp_path / "ours.jsonl"))[0] == "jsonl"
    assert load_jsonl(tmp_path / "ours.jsonl") == [lay]
    with pytest.raises(ValueError, match="condition_map must be a path string"):
        Layout(layout_id="k", caption="c", objects=(), condition_map=3)  # type: ignore[arg-type]


@pytest.fixture
def ade(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    labels = np.zeros((16, 24), dtype=np.uint8)
    labels[:, :16] = 13  # person, 2/3 of the image
    labels[:, 16:] = 4  # floor
    for stem in ("ADE_val_00000001", "ADE_val_00000002"):
        png(root / "images" / "validation" / f"{stem}.jpg", np.zeros((16, 24, 3)))
        png(root / "annotations" / "validation" / f"{stem}.png", labels)
    png(root / "images" / "validation" / "ADE_val_00000003.jpg", np.zeros((4, 4, 3)))  # no annotation
    return root


def test_ade20k_source(ade, tmp_path):
    (tmp_path / "caps.json").write_text(json.dumps({"ADE_val_00000001": "people in a hall"}))
    assert resolve_source(str(ade))[0] == "ade20k"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = load_layouts(str(ade), captions=str(tmp_path / "caps.json"))
    notes = [str(w.message) for w in caught if issubclass(w.category, LayoutWarning)]
    assert any("1 file without a partner" in n for n in notes) and any("1 image had no caption" in n for n in notes)
    assert (a.layout_id, a.caption, a.source) == ("ADE_val_00000001", "people in a hall", "ade20k")
    assert b.caption == "a photo of person and floor"  # the largest classes first
    assert a.condition_map.endswith("annotations/validation/ADE_val_00000001.png") and a.image_path.endswith(".jpg")
    y = load_condition(a, "sem", size=16)
    np.testing.assert_array_equal(np.unique(y), [4, 13])
    np.testing.assert_array_equal(y, np.asarray(Image.open(a.condition_map))[:, 4:20])
    rows(tmp_path / "caps.jsonl", {"id": "ADE_val_00000002.jpg", "caption": "two"})
    assert [lay.caption for lay in load_layouts(f"ade20k:{ade}", captions=str(tmp_path / "caps.jsonl"))][1] == "two"


def test_ade20k_errors(ade, tmp_path):
    with pytest.raises(InputError, match="not an ADE20K-style folder"):
        load_layouts(f"ade20k:{tmp_path}")
    (tmp_path / "bad.json").write_text(json.dumps([{"caption": "no id"}]))
    with pytest.raises(InputError, match=r"bad\.json \[row 1\]: each caption row needs 'id'"):
        load_layouts(str(ade), captions=str(tmp_path / "bad.json"))
