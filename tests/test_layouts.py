"""COCO / keypoint / JSONL layout sources, the registry, the summary and the bundled sample."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gligen_eval.boxes import area_xyxy, xyxy_norm_to_xywh_abs
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.layouts import (
    SAMPLE_DIR,
    LayoutWarning,
    caption_from_phrases,
    load_coco,
    load_coco_keypoints,
    load_jsonl,
    load_layouts,
    resolve_source,
    summarize_layouts,
    write_jsonl,
)
from gligen_eval.records import GroundedObject, Layout

CATS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}]


def coco(images, anns, cats=CATS):
    return {"images": images, "annotations": anns, "categories": copy.deepcopy(cats)}


def img(i, w=640, h=480):
    return {"id": i, "width": w, "height": h, "file_name": f"{i:012d}.jpg"}


def ann(i, image_id, cat, bbox, crowd=0, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": list(bbox), "iscrowd": crowd, **extra}


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


@pytest.fixture
def small(tmp_path):
    images = [img(7), img(3, 320, 240)]
    anns = [
        ann(10, 7, 1, [64, 48, 128, 240]),
        ann(11, 7, 18, [320, 240, 64, 48]),
        ann(12, 3, 3, [0, 0, 160, 120]),
        ann(13, 3, 62, [10, 10, 20, 20], crowd=1),
    ]
    caps = {"annotations": [
        {"id": 9, "image_id": 7, "caption": "second caption"},
        {"id": 4, "image_id": 7, "caption": "  A person   with a dog. "},
    ]}  # fmt: skip
    return write(tmp_path, "instances_small.json", coco(images, anns)), write(tmp_path, "captions_small.json", caps)


# --------------------------------------------------------------------------------------------
# COCO instances


def test_coco_parse_phrases_boxes_captions_ids(small):
    inst, caps = small
    with pytest.warns(LayoutWarning, match="no caption"):
        layouts = load_coco(inst, caps)
    assert [lay.layout_id for lay in layouts] == ["coco-3", "coco-7"]  # ordered by image id
    by_id = {lay.layout_id: lay for lay in layouts}
    seven = by_id["coco-7"]
    assert seven.caption == "A person with a dog."  # lowest caption annotation id, whitespace collapsed
    assert (seven.width, seven.height, seven.source) == (640, 480, "coco")
    assert seven.phrases == ["person", "dog"]  # largest box first
    person = seven.objects[0]
    assert person.box == pytest.approx((0.1, 0.1, 0.3, 0.6))
    assert (person.category, person.category_id, person.source_id) == ("person", 1, "10")
    # image 3 has no caption in the captions file: built from phrases (with a warning); crowd skipped
    three = by_id["coco-3"]
    assert three.phrases == ["car"]
    assert three.caption == caption_from_phrases(["car"]) == "a photo of car"


def test_coco_boxes_round_trip_through_box_helpers(small):
    inst, _ = small
    raw = {a["id"]: a["bbox"] for a in json.loads(inst.read_text())["annotations"]}
    for lay in load_coco(inst, skip_crowd=False):
        for o in lay.objects:
            back = xyxy_norm_to_xywh_abs(o.box, lay.width, lay.height)
            assert back == pytest.approx(raw[int(o.source_id)], abs=1e-9)


def test_caption_fallback_without_captions_file(small):
    inst, _ = small
    lay = {x.layout_id: x for x in load_coco(inst)}["coco-7"]
    assert lay.caption == "a photo of person and dog"
    assert caption_from_phrases(["dog", "person", "dog", "car"]) == "a photo of dog, person and car"


def test_missing_captions_warn(small):
    inst, caps = small
    with pytest.warns(LayoutWarning, match=r"captions_small\.json: 1 image had no caption"):
        load_coco(inst, caps)


def test_skip_crowd(small):
    inst, _ = small
    default = {x.layout_id: x for x in load_coco(inst)}
    assert [o.source_id for o in default["coco-3"].objects] == ["12"]
    keep = {x.layout_id: x for x in load_coco(inst, skip_crowd=False)}
    assert [o.source_id for o in keep["coco-3"].objects] == ["12", "13"]


def test_min_area_drops_boxes_and_empty_images(tmp_path):
    images = [img(1), img(2)]
    anns = [ann(1, 1, 1, [0, 0, 320, 240]), ann(2, 1, 18, [0, 0, 32, 24]), ann(3, 2, 3, [0, 0, 10, 10])]
    p = write(tmp_path, "instances_area.json", coco(images, anns))
    assert len(load_coco(p)) == 2
    out = load_coco(p, min_area=0.01)  # box 2 covers 0.0025, box 3 about 0.0003
    assert [x.layout_id for x in out] == ["coco-1"]
    assert [o.source_id for o in out[0].objects] == ["1"]
    with pytest.raises(ConfigError, match="min_area"):
        load_coco(p, min_area=1.5)


def test_max_objects_keeps_largest_with_warning(tmp_path):
    anns = [ann(100 + k, 1, 3, [k, k, 10 + k, 8 + k]) for k in range(35)]
    p = write(tmp_path, "instances_many.json", coco([img(1)], anns))
    with pytest.warns(LayoutWarning, match=r"1 image had more than 30 objects; kept the 30 largest"):
        (lay,) = load_coco(p)
    assert len(lay.objects) == 30
    areas = [area_xyxy(o.box) for o in lay.objects]
    assert areas == sorted(areas, reverse=True)
    assert {o.source_id for o in lay.objects} == {str(100 + k) for k in range(5, 35)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (lay,) = load_coco(p, max_objects=None)
    assert len(lay.objects) == 35
    with pytest.warns(LayoutWarning, match="more than 4 objects"):
        (lay,) = load_coco(p, max_objects=4)
    assert [o.source_id for o in lay.objects] == ["134", "133", "132", "131"]


def test_ties_in_area_keep_annotation_order(tmp_path):
    anns = [ann(9, 1, 3, [0, 0, 10, 10]), ann(4, 1, 18, [50, 50, 10, 10]), ann(6, 1, 1, [100, 100, 10, 10])]
    p = write(tmp_path, "instances_ties.json", coco([img(1)], anns))
    with pytest.warns(LayoutWarning):
        (lay,) = load_coco(p, max_objects=2)
    assert [o.source_id for o in lay.objects] == ["4", "6"]


def _many_images(tmp_path, n=40, reverse=False):
    images = [img(i) for i in range(1, n + 1)]
    anns = [ann(1000 + i, i, 3, [i, i, 50, 40]) for i in range(1, n + 1)]
    if reverse:
        images, anns = images[::-1], anns[::-1]
    return write(tmp_path, f"instances_{'rev' if reverse else 'fwd'}.json", coco(images, anns))


def test_subsample_deterministic_stable_and_nested(tmp_path):
    fwd, rev = _many_images(tmp_path), _many_images(tmp_path, reverse=True)
    a = load_coco(fwd, limit=5, seed=0)
    b = load_coco(fwd, limit=5, seed=0)
    c = load_coco(rev, limit=5, seed=0)
    assert len(a) == 5
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b] == [x.to_dict() for x in c]
    other = load_coco(fwd, limit=5, seed=1)
    assert {x.layout_id for x in other} != {x.layout_id for x in a}
    ten = load_coco(fwd, limit=10, seed=0)
    assert {x.layout_id for x in a} < {x.layout_id for x in ten}
    assert len(load_coco(fwd, limit=100)) == 40
    assert load_coco(fwd, limit=0) == []
    ids = [x.layout_id for x in ten]
    assert ids == sorted(ids, key=lambda s: int(s.split("-")[1]))


@pytest.mark.filterwarnings("ignore::gligen_eval.layouts.LayoutWarning")
def test_layout_ids_and_content_stable_across_loads(small):
    inst, caps = small
    first = [(x.layout_id, x.content_hash()) for x in load_coco(inst, caps)]
    again = [(x.layout_id, x.content_hash()) for x in load_coco(inst, caps)]
    assert first == again


def test_images_dir(small, tmp_path):
    inst, _ = small
    d = tmp_path / "imgs"
    d.mkdir()
    lay = load_coco(inst, images_dir=d)[0]
    assert lay.image_path == str(d / "000000000003.jpg")
    with pytest.raises(InputError, match="images_dir is not a folder"):
        load_coco(inst, images_dir=tmp_path / "missing")


def test_box_overshoot_within_tolerance_is_clipped(tmp_path):
    p = write(tmp_path, "instances_tol.json", coco([img(1, 100, 50)], [ann(5, 1, 3, [60.0, 10.0, 40.6, 40.4])]))
    (lay,) = load_coco(p)
    assert lay.objects[0].box == pytest.approx((0.6, 0.2, 1.0, 1.0))
    with pytest.raises(InputError, match=r"annotation 5\]: bbox .* lies outside"):
        load_coco(p, tolerance_px=0.1)


BAD_CASES = {
    "missing field": (lambda d: d["annotations"][1].pop("bbox"), "annotation 11", "missing field"),
    "box outside": (lambda d: d["annotations"][1].update(bbox=[600, 400, 100, 100]), "annotation 11", "outside"),
    "zero width": (lambda d: d["annotations"][1].update(bbox=[10, 10, 0, 5]), "annotation 11", "non-positive"),
    "negative height": (lambda d: d["annotations"][1].update(bbox=[10, 10, 5, -5]), "annotation 11", "non-positive"),
    "bbox not numbers": (lambda d: d["annotations"][1].update(bbox=[1, 2, "x", 4]), "annotation 11", "4 numbers"),
    "unknown category": (lambda d: d["annotations"][1].update(category_id=999), "annotation 11", "category_id 999"),
    "unknown image": (lambda d: d["annotations"][1].update(image_id=42), "annotation 11", "image_id 42"),
    "bad iscrowd": (lambda d: d["annotations"][1].update(iscrowd=5), "annotation 11", "iscrowd"),
    "duplicate id": (lambda d: d["annotations"][1].update(id=10), "annotation 10", "duplicate"),
    "image size": (lambda d: d["images"][0].update(width=0), "image 7", "positive"),
    "image missing height": (lambda d: d["images"][0].pop("height"), "image 7", "missing field 'height'"),
    "category without name": (lambda d: d["categories"][1].pop("name"), "category 3", "missing field 'name'"),
    "annotation without id": (lambda d: d["annotations"][1].pop("id"), "annotations[1]", "missing field"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_and_record(small, case):
    inst, _ = small
    data = json.loads(inst.read_text())
    mutate, record, text = BAD_CASES[case]
    mutate(data)
    inst.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        load_coco(inst)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{inst} [{record}]: ")
    assert text in msg


def test_bad_file_structure(tmp_path):
    p = tmp_path / "instances_broken.json"
    p.write_text('{"images": [], "annotations": [,]}')
    with pytest.raises(InputError, match=r"instances_broken\.json: malformed JSON at line 1 column"):
        load_coco(p)
    p.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(InputError, match=r"instances_broken\.json: missing the 'categories' list"):
        load_coco(p)
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "nope.json")
    p.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        load_coco(p)


def test_captions_file_errors_name_the_caption(small):
    inst, caps = small
    caps.write_text(json.dumps({"annotations": [{"id": 77, "image_id": 7}]}))
    with pytest.raises(InputError, match=r"captions_small\.json \[annotation 77\]: missing field\(s\) 'caption'"):
        load_coco(inst, caps)


def test_on_invalid_skip_drops_and_warns(small):
    inst, _ = small
    data = json.loads(inst.read_text())
    data["annotations"][1]["category_id"] = 999
    data["annotations"][0]["bbox"] = [0, 0, 0, 0]
    inst.write_text(json.dumps(data))
    with pytest.warns(LayoutWarning, match=r"skipped 2 invalid annotations \(first: \[annotation 10\]"):
        out = load_coco(inst, on_invalid="skip")
    assert [x.layout_id for x in out] == ["coco-3"]
    with pytest.raises(ConfigError):
        load_coco(inst, on_invalid="ignore")


# --------------------------------------------------------------------------------------------
# keypoints


def _kps(points):
    """points: {index: (x, y, v)} -> flat 51 list."""
    flat = [0] * 51
    for i, (x, y, v) in points.items():
        flat[3 * i : 3 * i + 3] = [x, y, v]
    return flat


KP_CAT = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}]


def test_keypoints_visibility_two_only(tmp_path):
    a = ann(5, 1, 1, [100, 100, 200, 300], keypoints=_kps({0: (200, 120, 2), 1: (210, 110, 1), 5: (150, 200, 2)}))
    p = write(tmp_path, "person_keypoints_t.json", coco([img(1, 400, 400)], [a], KP_CAT))
    (lay,) = load_coco_keypoints(p)
    (person,) = lay.objects
    assert lay.layout_id == "coco-kp-1"
    assert len(person.keypoints) == 17
    assert person.keypoints[0] == pytest.approx((0.5, 0.3, 2))
    assert person.keypoints[1] == (0.0, 0.0, 0)  # occluded (v=1) is not present
    assert person.keypoints[5] == pytest.approx((0.375, 0.5, 2))
    assert sum(1 for k in person.keypoints if k[2] == 2) == 2
    assert all(k == (0.0, 0.0, 0) for i, k in enumerate(person.keypoints) if i not in (0, 5))


def test_keypoints_largest_first_at_most_eight(tmp_path):
    anns = [ann(k + 1, 1, 1, [10 * k, 5, 5 + 3 * k, 10 + 4 * k], keypoints=_kps({0: (10 * k + 2, 7, 2)})) for k in range(10)]
    anns.append(ann(50, 1, 1, [0, 300, 300, 90], keypoints=_kps({3: (5, 310, 1)})))  # no visible point
    p = write(tmp_path, "person_keypoints_m.json", coco([img(1)], anns, KP_CAT))
    with pytest.warns(LayoutWarning, match=r"more than 8 persons; kept the 8 largest"):
        (lay,) = load_coco_keypoints(p)
    assert [o.source_id for o in lay.objects] == [str(k + 1) for k in range(9, 1, -1)]
    areas = [area_xyxy(o.box) for o in lay.objects]
    assert areas == sorted(areas, reverse=True)
    with pytest.warns(LayoutWarning):
        (lay0,) = load_coco_keypoints(p, min_keypoints=0)
    assert lay0.objects[0].source_id == "50"  # the largest box, kept only when no visible point is required


def test_keypoints_bad_input(tmp_path):
    a = ann(8, 1, 1, [0, 0, 50, 50], keypoints=[1, 2, 2])
    p = write(tmp_path, "person_keypoints_bad.json", coco([img(1)], [a], KP_CAT))
    with pytest.raises(InputError, match=r"person_keypoints_bad\.json \[annotation 8\]: keypoints must be 51 numbers"):
        load_coco_keypoints(p)
    a = ann(9, 1, 1, [0, 0, 50, 50], keypoints=_kps({2: (700, 10, 2)}))
    p = write(tmp_path, "person_keypoints_bad.json", coco([img(1)], [a], KP_CAT))
    with pytest.raises(InputError, match=r"\[annotation 9\]: keypoint 2 \(700, 10\) lies outside"):
        load_coco_keypoints(p)
    p = write(tmp_path, "person_keypoints_bad.json", coco([img(1)], [], CATS))
    with pytest.raises(InputError, match="no category has a 'keypoints' list"):
        load_coco_keypoints(p)


def test_coco_merges_keypoints_by_annotation_id(small, tmp_path):
    inst, _ = small
    kp = coco([img(7)], [ann(10, 7, 1, [64, 48, 128, 240], keypoints=_kps({0: (128, 96, 2)}))], KP_CAT)
    kp_path = write(tmp_path, "person_keypoints_small.json", kp)
    seven = {x.layout_id: x for x in load_coco(inst, keypoints_path=kp_path)}["coco-7"]
    person, dog = seven.objects
    assert person.keypoints[0] == pytest.approx((0.2, 0.2, 2))
    assert dog.keypoints is None
    kp["annotations"][0]["image_id"] = 3
    kp["images"] = [img(3)]
    write(tmp_path, "person_keypoints_small.json", kp)
    with pytest.raises(InputError, match=r"\[annotation 10\]: is on image 3"):
        load_coco(inst, keypoints_path=kp_path)


def test_keypoints_reference_file(reference_dir):
    path = reference_dir / "mmpose" / "test_coco.json"
    raw = json.loads(path.read_text())
    layouts = load_coco_keypoints(path)
    assert {x.layout_id for x in layouts} == {f"coco-kp-{i['id']}" for i in raw["images"]}
    raw_by_id = {a["id"]: a for a in raw["annotations"]}
    for lay in layouts:
        assert len(lay.objects) <= 8
        for o in lay.objects:
            a = raw_by_id[int(o.source_id)]
            assert sum(1 for k in o.keypoints if k[2] == 2) == sum(1 for v in a["keypoints"][2::3] if v == 2)


# --------------------------------------------------------------------------------------------
# bundled sample


def test_sample_text_box_layouts():
    layouts = load_layouts("sample")
    assert len(layouts) == 24
    assert [x.layout_id for x in layouts] == [f"sample-{i}" for i in range(1, 25)]
    coco_names = {c["name"] for c in json.loads((SAMPLE_DIR / "instances_sample.json").read_text())["categories"]}
    assert len(coco_names) == 80
    for lay in layouts:
        assert lay.caption and lay.source == "sample"
        assert 2 <= len(lay.objects) <= 30
        assert all(o.category in coco_names and o.phrase == o.category for o in lay.objects)
    persons = [o for x in layouts for o in x.objects if o.category == "person"]
    with_kp = [o for o in persons if o.keypoints is not None]
    assert len(persons) >= 10 and len(with_kp) >= 10
    assert all(sum(1 for k in o.keypoints if k[2] == 2) >= 1 for o in with_kp)
    assert len({o.category for x in layouts for o in x.objects}) >= 30


def test_sample_keypoint_layouts():
    layouts = load_layouts("sample-keypoints")
    assert 8 <= len(layouts) <= 24
    for lay in layouts:
        assert lay.layout_id.startswith("sample-kp-")
        assert 1 <= len(lay.objects) <= 8
        assert all(o.category == "person" and o.keypoints is not None for o in lay.objects)
        areas = [area_xyxy(o.box) for o in lay.objects]
        assert areas == sorted(areas, reverse=True)
    assert any(len(lay.objects) >= 3 for lay in layouts)


def test_sample_files_match_their_generator():
    from gligen_eval.layouts.sample.make_sample import build

    instances, captions, keypoints = build()
    for name, data in (("instances_sample.json", instances), ("captions_sample.json", captions),
                       ("person_keypoints_sample.json", keypoints)):  # fmt: skip
        assert json.loads((SAMPLE_DIR / name).read_text()) == json.loads(json.dumps(data)), name
    assert (SAMPLE_DIR / "README.md").is_file()


def test_sample_is_valid_for_pycocotools():
    from pycocotools.coco import COCO

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(SAMPLE_DIR / "person_keypoints_sample.json"))
        inst = COCO(str(SAMPLE_DIR / "instances_sample.json"))
    assert len(inst.getImgIds()) == 24 and len(inst.getCatIds()) == 80
    assert len(gt.getAnnIds(catIds=[1])) == len(inst.getAnnIds(catIds=[1]))


# --------------------------------------------------------------------------------------------
# JSONL


def _free_layouts():
    return [
        Layout("a", "a cat on a table", (GroundedObject("cat", (0.1, 0.2, 0.5, 0.6)),
                                          GroundedObject("table", (0.0, 0.5, 1.0, 1.0), category="dining table"))),
        Layout("b", "two birds", (GroundedObject("bird", (0.1, 0.1, 0.2, 0.2)), GroundedObject("bird", (0.5, 0.1, 0.7, 0.3))),
               width=512, height=512, source="mine"),
    ]  # fmt: skip


def test_jsonl_round_trip(tmp_path):
    p = write_jsonl(_free_layouts(), tmp_path / "mine.jsonl")
    back = load_jsonl(p)
    assert [x.to_dict() for x in back] == [x.to_dict() for x in _free_layouts()]
    assert back[0].objects[0].category is None
    assert [x.layout_id for x in load_layouts(str(p))] == ["a", "b"]


def test_jsonl_selection_keeps_order(tmp_path):
    p = write_jsonl(_free_layouts(), tmp_path / "mine.jsonl")
    with pytest.warns(LayoutWarning, match="more than 1 objects"):
        out = load_jsonl(p, max_objects=1)
    assert [o.phrase for o in out[0].objects] == ["table"]
    with pytest.warns(LayoutWarning, match="skipped 1 layout with no object left"):
        out = load_jsonl(p, min_area=0.05)
    assert [x.layout_id for x in out] == ["a"]


@pytest.mark.parametrize(
    "lines, line, text",
    [
        (['{"layout_id": "a", "caption": "x", "objects": []}', "", "{oops"], 3, "malformed JSON"),
        (['{"layout_id": "a", "caption": "x", "objects": []}', '{"layout_id": "b", "caption": "y", "objects": '
          '[{"phrase": "cat", "box": [0.5, 0.5, 1.5, 0.9]}]}'], 2, "outside the image"),
        (['{"layout_id": "a", "caption": "x", "objects": []}', '{"layout_id": "a", "caption": "y", "objects": []}'],
         2, "also on line 1"),
        (['{"caption": "x", "objects": []}'], 1, "missing field 'layout_id'"),
        (['{"layout_id": "a", "caption": "x", "objects": [], "colour": 1}'], 1, "unknown field"),
        (["[1, 2]"], 1, "expected a JSON object"),
    ],
)  # fmt: skip
def test_jsonl_errors_name_the_line(tmp_path, lines, line, text):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        load_jsonl(p)
    msg = str(e.value)
    assert msg.startswith(f"{p} [line {line}") and text in msg and "\n" not in msg


def test_jsonl_non_utf8_line_is_named(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"layout_id": "a", "caption": "x", "objects": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}\n'
                  b'{"layout_id": "b", "caption": "caf\xe9", "objects": []}\n')
    with pytest.raises(InputError, match=r"latin1\.jsonl \[line 2\]: not UTF-8 text"):
        load_jsonl(p)


# --------------------------------------------------------------------------------------------
# registry


def test_registry_dispatch_by_name_and_content(small, tmp_path):
    inst, caps = small
    assert resolve_source(inst)[0] == "coco"
    assert resolve_source("sample") == ("sample", None)
    assert resolve_source("sample-keypoints") == ("sample-keypoints", None)
    renamed = write(tmp_path, "gt.json", json.loads(inst.read_text()))
    assert resolve_source(renamed)[0] == "coco"
    kp = write(tmp_path, "gt_kp.json", coco([img(1)], [], KP_CAT))
    assert resolve_source(kp)[0] == "coco-keypoints"
    lvis_like = coco([img(1)], [], [{"id": 1, "name": "acorn", "frequency": "r", "synonyms": ["acorn"]}])
    assert resolve_source(write(tmp_path, "val.json", lvis_like))[0] == "lvis"
    nsr = [{"id": 1, "prompt": "a cat", "object_list": [["cat", [0.1, 0.1, 0.2, 0.2]]]}]
    assert resolve_source(write(tmp_path, "mine.json", nsr))[0] == "nsr1k"
    hrs = {"a cat.": [["cat"], [[10, 10, 100, 100]]]}
    assert resolve_source(write(tmp_path, "boxes.json", hrs))[0] == "hrs"
    # explicit kind wins over the name
    assert resolve_source(f"coco:{tmp_path / 'boxes.json'}")[0] == "coco"
    with pytest.raises(InputError, match="missing the 'categories' list"):
        load_layouts(f"coco:{tmp_path / 'boxes.json'}")
    with pytest.warns(LayoutWarning, match="no caption"):
        assert [x.layout_id for x in load_layouts(renamed, captions=str(caps))] == ["coco-3", "coco-7"]


def test_registry_errors(small, tmp_path):
    inst, caps = small
    with pytest.raises(InputError, match=r"no such layout source; use 'sample'"):
        load_layouts("nosuch")
    with pytest.raises(InputError, match="COCO captions file"):
        load_layouts(caps)
    with pytest.raises(InputError, match="COCO captions file"):
        load_layouts(write(tmp_path, "caps_renamed.json", json.loads(caps.read_text())))
    with pytest.raises(InputError, match="unrecognised layout file"):
        load_layouts(write(tmp_path, "what.json", {"hello": 1}))
    with pytest.raises(InputError, match="is a folder"):
        load_layouts(tmp_path)


def test_registry_options(small, tmp_path):
    inst, caps = small
    # the runner passes every LayoutsConfig field; None means "not set", shared defaults are fine anywhere
    every = dict(captions=None, limit=None, seed=0, max_objects=30, min_area=0.0, skip_crowd=True, images_dir=None)
    assert len(load_layouts("sample", **every)) == 24
    assert len(load_layouts("sample-keypoints", **every)) >= 8
    jl = write_jsonl(_free_layouts(), tmp_path / "mine.jsonl")
    assert len(load_layouts(jl, **every)) == 2
    assert len(load_layouts("sample", limit=5, seed=3)) == 5
    with pytest.raises(ConfigError, match=r"skip_crowd=False does not apply to jsonl layouts"):
        load_layouts(jl, skip_crowd=False)
    with pytest.raises(ConfigError, match="captions=.* does not apply to sample"):
        load_layouts("sample", captions=str(caps))
    with pytest.raises(ConfigError, match="max_objects=5 does not apply to sample-keypoints.*max_persons"):
        load_layouts("sample-keypoints", max_objects=5)
    with pytest.warns(LayoutWarning, match="more than 2 persons"):
        assert all(len(x.objects) <= 2 for x in load_layouts("sample-keypoints", max_persons=2))
    with pytest.raises(ConfigError, match="bogus"):
        load_layouts(inst, bogus=1)


# --------------------------------------------------------------------------------------------
# summary and import cost


def test_summarize_layouts():
    layouts = load_layouts("sample")
    text = summarize_layouts(layouts, limit=3)
    lines = text.splitlines()
    n_obj = sum(len(x.objects) for x in layouts)
    assert lines[0].startswith(f"24 layouts, {n_obj} objects (per layout: min 2")
    assert "top categories" in text and "person 17" in text
    assert "keypoints: " in text
    first = next(line for line in lines if line.startswith("sample-1 "))
    assert '"A woman walking a dog across a city street."' in first
    assert "person [0.39, 0.31, 0.54, 0.76] kp 11/17" in first
    assert sum(1 for line in lines if line.startswith("sample-")) == 3
    assert lines[-1] == "... 21 more (showing 3 of 24)"
    full = summarize_layouts(layouts)
    assert sum(1 for line in full.splitlines() if line.startswith("sample-")) == 24
    assert summarize_layouts([]) == "0 layouts"


def test_import_does_not_load_torch():
    code = (
        "import sys, gligen_eval.layouts, gligen_eval.layouts.lvis, gligen_eval.layouts.external; "
        "heavy = [m for m in ('torch', 'numpy', 'diffusers', 'transformers', 'ultralytics', 'pandas') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
