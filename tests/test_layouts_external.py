"""LVIS, NSR-1K and HRS layout sources (synthetic files, plus the reference files when present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gligen_eval.boxes import xywh_norm_to_xyxy_norm
from gligen_eval.errors import InputError
from gligen_eval.layouts import (
    LayoutWarning,
    hrs_subset,
    load_hrs,
    load_layouts,
    load_lvis,
    load_lvis_meta,
    load_nsr1k,
    lvis_phrase,
    resolve_source,
)


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


# --------------------------------------------------------------------------------------------
# LVIS


def lvis_v1():
    cats = [
        {"id": 1, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"], "frequency": "c", "def": "..."},
        {"id": 2, "name": "bat_(animal)", "synonyms": ["bat_(animal)"], "frequency": "r"},
        {"id": 3, "name": "banana", "synonyms": ["banana"], "frequency": "f"},
    ]
    images = [
        {"id": 5, "width": 640, "height": 480, "coco_url": "http://images.cocodataset.org/val2017/000000000005.jpg",
         "neg_category_ids": [2], "not_exhaustive_category_ids": [3]},
        {"id": 6, "width": 500, "height": 500, "coco_url": "http://images.cocodataset.org/train2017/000000000006.jpg",
         "neg_category_ids": [], "not_exhaustive_category_ids": []},
    ]  # fmt: skip
    anns = [
        {"id": 11, "image_id": 5, "category_id": 1, "bbox": [64, 48, 64, 96], "area": 100.0},
        {"id": 12, "image_id": 5, "category_id": 3, "bbox": [0, 0, 320, 240], "area": 100.0},
        {"id": 13, "image_id": 6, "category_id": 2, "bbox": [100, 100, 50, 50], "area": 100.0},
    ]
    return {"images": images, "annotations": anns, "categories": cats}


def test_lvis_v1_layouts(tmp_path):
    p = write(tmp_path, "lvis_v1_val.json", lvis_v1())
    assert resolve_source(p)[0] == "lvis"
    d = tmp_path / "coco2017"
    d.mkdir()
    layouts = load_lvis(p, images_dir=d)
    assert [x.layout_id for x in layouts] == ["lvis-5", "lvis-6"]
    five = layouts[0]
    assert five.phrases == ["banana", "aerosol can"]  # largest first; underscores -> spaces
    assert [o.category for o in five.objects] == ["banana", "aerosol_can"]
    assert [o.category_id for o in five.objects] == [3, 1]
    assert five.objects[1].box == pytest.approx((0.1, 0.1, 0.2, 0.3))
    assert five.caption == "a photo of banana and aerosol can"
    assert five.image_path == str(d / "000000000005.jpg")
    assert layouts[1].phrases == ["bat (animal)"]
    assert load_lvis(p, strip_qualifier=True)[1].phrases == ["bat"]


def test_lvis_meta_frequency_groups(tmp_path):
    p = write(tmp_path, "lvis_v1_val.json", lvis_v1())
    meta = load_lvis_meta(p)
    assert meta.frequency_groups() == {"r": [2], "c": [1], "f": [3]}
    assert meta.categories[1].phrase == "aerosol can" and meta.categories[1].synonyms == ("aerosol_can", "spray_can")
    assert meta.neg_category_ids == {"lvis-5": (2,), "lvis-6": ()}
    assert meta.not_exhaustive_category_ids["lvis-5"] == (3,)


def test_lvis_layouts_carry_what_lvis_scoring_needs(tmp_path):
    """Each layout holds its image's negative / not-exhaustive ids and each object its category's frequency,
    through layouts.jsonl too; none of it changes the layout's content hash, and the source folder rides along."""
    import dataclasses

    from gligen_eval.records import Layout
    from gligen_eval.scoring import coco

    p = write(tmp_path, "lvis_v1_val.json", lvis_v1())
    five, six = load_layouts(p)
    assert five.lvis_style and (five.neg_category_ids, five.not_exhaustive_category_ids) == ((2,), (3,))
    assert (six.neg_category_ids, six.not_exhaustive_category_ids) == ((), ())
    assert [o.frequency for o in five.objects] == ["f", "c"] and six.objects[0].frequency == "r"
    assert five.source_dir == str(tmp_path)
    back = Layout.from_dict(json.loads(json.dumps(five.to_dict())))
    assert back == five and back.lvis_style and back.source_dir == five.source_dir
    plain = dataclasses.replace(five, neg_category_ids=None, not_exhaustive_category_ids=None, source_dir=None,
                                objects=tuple(dataclasses.replace(o, frequency=None) for o in five.objects))  # fmt: skip
    assert not plain.lvis_style and plain.content_hash() == five.content_hash()
    assert coco.lvis_categories([five, six]) == [{"id": 1, "name": "aerosol_can", "frequency": "c"},
                                                 {"id": 2, "name": "bat_(animal)", "frequency": "r"},
                                                 {"id": 3, "name": "banana", "frequency": "f"}]  # fmt: skip
    gt, _ = coco.build_eval_inputs([("a", five, 640, 480, []), ("b", six, 500, 500, [])])
    assert [(im["neg_category_ids"], im["not_exhaustive_category_ids"]) for im in gt["images"]] == [([2], [3]), ([], [])]
    with pytest.raises(InputError, match=r"layout lvis-5 is LVIS-style .* layout lvis-6 is not"):
        coco.lvis_style_of([five, dataclasses.replace(six, neg_category_ids=None, not_exhaustive_category_ids=None)])
    with pytest.raises(ValueError, match="neg_category_ids needs not_exhaustive_category_ids"):
        dataclasses.replace(six, not_exhaustive_category_ids=None)
    with pytest.raises(InputError, match=r"layout lvis-6.*category id 2 as 'bat' \(r\)"):
        coco.lvis_categories([six, dataclasses.replace(six, objects=(dataclasses.replace(six.objects[0], category="bat"),))])


def test_lvis_bad_input(tmp_path):
    data = lvis_v1()
    data["categories"][1]["frequency"] = "x"
    p = write(tmp_path, "lvis_bad.json", data)
    with pytest.raises(InputError, match=r"lvis_bad\.json \[category 2\]: frequency must be one of"):
        load_lvis(p)
    data = lvis_v1()
    data["annotations"][2]["category_id"] = 77
    p = write(tmp_path, "lvis_bad.json", data)
    with pytest.raises(InputError, match=r"lvis_bad\.json \[annotation 13\]: category_id 77"):
        load_lvis(p)
    data = lvis_v1()
    data["images"][0]["neg_category_ids"] = [99]
    p = write(tmp_path, "lvis_bad.json", data)
    with pytest.raises(InputError, match=r"\[image 5\]: neg_category_ids has unknown"):
        load_lvis_meta(p)
    with pytest.raises(InputError, match=r"\[image 5\]: neg_category_ids has unknown"):
        load_lvis(p)


def test_lvis_phrase():
    assert lvis_phrase("aerosol_can", ["aerosol_can", "spray_can"]) == "aerosol can"
    assert lvis_phrase("bow_(weapon)", None) == "bow (weapon)"
    assert lvis_phrase("bow_(weapon)", None, strip_qualifier=True) == "bow"
    assert lvis_phrase("x", ["first_one", "second"]) == "first one"


def test_lvis_v05_reference(reference_dir):
    path = reference_dir / "faster_coco_eval" / "lvis_dataset__lvis_val_100.json"
    raw = json.loads(path.read_text())
    with pytest.warns(LayoutWarning, match="more than 30 objects"):
        layouts = load_layouts(path)
    annotated = {a["image_id"] for a in raw["annotations"]}
    assert {x.layout_id for x in layouts} == {f"lvis-{i}" for i in annotated}
    assert all(x.source == "lvis" and len(x.objects) <= 30 for x in layouts)
    assert all("_" not in o.phrase for x in layouts for o in x.objects)
    cats = {c["id"]: c for c in raw["categories"]}
    assert all(o.category == cats[o.category_id]["name"] for x in layouts for o in x.objects)
    groups = load_lvis_meta(path).frequency_groups()
    assert {k: len(v) for k, v in groups.items()} == {"r": 454, "c": 461, "f": 315}
    with pytest.warns(LayoutWarning):
        assert len(load_layouts(path, limit=10, seed=1)) == 10


# --------------------------------------------------------------------------------------------
# NSR-1K


def test_nsr1k_synthetic(tmp_path):
    data = [
        {"id": 3, "prompt": "two  dogs", "object_list": [["dog", [0.1, 0.2, 0.3, 0.4]], ["dog", [0.5, 0.5, 0.2, 0.2]]]},
        {"id": 4, "prompt": "a cat left of a dog", "obj1": ["cat", [0.0, 0.1, 0.4, 0.5]], "obj2": ["dog", [0.5, 0.1, 0.4, 0.5]],
         "relation": "left"},
        {"id": 5, "prompt": "no layout", "obj1": ["cat", [0, 0, 0, 0]], "obj2": ["dog", [0, 0, 0, 0]]},
    ]  # fmt: skip
    p = write(tmp_path, "nsr_mixed.json", data)
    with pytest.warns(LayoutWarning, match="skipped 1 prompt with no usable box"):
        layouts = load_nsr1k(p)
    assert [x.layout_id for x in layouts] == ["nsr1k-counting-3", "nsr1k-spatial-4"]
    assert layouts[0].caption == "two dogs" and layouts[0].source == "nsr1k/counting"
    assert layouts[0].objects[0].box == pytest.approx((0.1, 0.2, 0.4, 0.6))
    assert [o.phrase for o in layouts[1].objects] == ["cat", "dog"]
    assert layouts[1].objects[0].category == "cat"


def test_nsr1k_bad_box(tmp_path):
    data = [{"id": 8, "prompt": "x", "object_list": [["dog", [0.8, 0.2, 0.5, 0.4]], ["cat", [0.1, 0.1, 0.2, 0.2]]]}]
    p = write(tmp_path, "nsr_bad.json", data)
    with pytest.raises(InputError, match=r"nsr_bad\.json \[id 8\]: object 0 \(dog\): box .* lies outside"):
        load_nsr1k(p, on_invalid="error")
    with pytest.warns(LayoutWarning, match=r"skipped 1 invalid object \(first: \[id 8\]"):
        (lay,) = load_nsr1k(p)
    assert lay.phrases == ["cat"]
    p = write(tmp_path, "nsr_bad.json", [{"id": 9, "prompt": "x"}])
    with pytest.raises(InputError, match=r"\[id 9\]: has neither 'object_list'"):
        load_nsr1k(p)


def test_nsr1k_reference(reference_dir):
    folder = reference_dir / "layoutgpt_nsr1k"
    counting = load_layouts(folder / "counting.val.json")
    assert len(counting) == 762
    raw = {r["id"]: r for r in json.loads((folder / "counting.val.json").read_text())}
    lay = next(x for x in counting if x.layout_id == "nsr1k-counting-39460")
    assert lay.caption == raw[39460]["prompt"]
    assert lay.phrases == ["dog", "bowl"]
    for o, (_, b) in zip(lay.objects, raw[39460]["object_list"]):
        assert o.box == pytest.approx(xywh_norm_to_xyxy_norm(b))
    with pytest.warns(LayoutWarning, match="skipped 19 prompts with no usable box"):
        spatial = load_layouts(folder / "spatial.val.json")
    assert len(spatial) == 283 - 19
    assert all(len(x.objects) == 2 for x in spatial)
    a = load_layouts(folder / "counting.val.json", limit=50, seed=7)
    b = load_layouts(folder / "counting.val.json", limit=50, seed=7)
    assert [x.layout_id for x in a] == [x.layout_id for x in b] and len(a) == 50


# --------------------------------------------------------------------------------------------
# HRS


def test_hrs_subset_names():
    assert hrs_subset("gpt_generated_box__spatial.json") == "spatial"
    assert hrs_subset("gpt_generated_box_drawbench__counting.json") == "drawbench-counting"
    assert hrs_subset("my_boxes.json") == "my-boxes"


def test_hrs_synthetic(tmp_path):
    data = {
        "a horse below a car.": [["horse", "car"], [[128, 256, 384, 512], [100, 0, 400, 200]]],
        "a parking_meter.": [["parking_meter"], [[0, 0, 520, 256]]],  # overshoots the canvas: clipped
        "bad one.": [["dog", "cat"], [[10, 10], [0, 0, 0, 0]]],
    }
    p = write(tmp_path, "gpt_generated_box__spatial.json", data)
    with pytest.warns(LayoutWarning) as rec:
        layouts = load_layouts(p)
    messages = " | ".join(str(w.message) for w in rec)
    assert "skipped 2 invalid objects" in messages and "clipped 1 box that overshot the 512x512 canvas" in messages
    assert "skipped 1 prompt with no usable box" in messages
    assert [x.source for x in layouts] == ["hrs/spatial"] * 2
    horse = layouts[0]
    assert horse.caption == "a horse below a car." and horse.phrases == ["horse", "car"]
    assert horse.objects[0].box == pytest.approx((0.25, 0.5, 0.75, 1.0))
    assert [o.category for o in horse.objects] == ["horse", "car"]  # phrases that name a COCO class get it
    assert layouts[1].objects[0].category == "parking meter"
    assert layouts[1].phrases == ["parking meter"] and layouts[1].objects[0].box == pytest.approx((0, 0, 1, 0.5))
    # ids come from the prompt, not the position in the file
    p2 = write(tmp_path, "gpt_generated_box__spatial_rev.json", dict(reversed(list(data.items()))))
    with pytest.warns(LayoutWarning):
        again = load_hrs(p2, subset="spatial")
    assert sorted(x.layout_id for x in again) == sorted(x.layout_id for x in layouts)
    with pytest.raises(InputError, match=r"\[prompt 'bad one.'\]: object 0 \(dog\): box must be 4 numbers"):
        load_hrs(p, on_invalid="error")


def test_hrs_reference(reference_dir):
    folder = reference_dir / "attention_refocusing_hrs"
    spatial_path = folder / "gpt_generated_box__spatial.json"
    raw = json.loads(spatial_path.read_text())
    with pytest.warns(LayoutWarning, match="clipped 1 box"):
        spatial = load_layouts(spatial_path)
    assert len(spatial) == len(raw) == 401
    first = next(x for x in spatial if x.caption == "a horse below a car.")
    assert first.phrases == ["horse", "car"]
    assert first.objects[0].box == pytest.approx((120 / 512, 300 / 512, 360 / 512, 480 / 512))
    with pytest.warns(LayoutWarning) as rec:
        counting = load_layouts(folder / "gpt_generated_box__counting.json")
    messages = " | ".join(str(w.message) for w in rec)
    # 3 boxes with two numbers, 5 empty boxes, 5 boxes wholly off the canvas; 19 boxes overshoot it
    assert "skipped 13 invalid objects" in messages and "clipped 19 boxes" in messages
    assert len(counting) == 518  # every prompt keeps at least one box
    assert all("_" not in o.phrase for x in counting for o in x.objects)
