"""What the generator is given is what every scorer scores: persons, classes, file kinds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from gligen_eval.errors import GligenEvalError, InputError
from gligen_eval.layouts import LayoutWarning, load_layouts
from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord


def person(cx: float, cy: float, s: float = 0.04) -> tuple:
    return tuple((min(1.0, max(0.0, cx + s * ((k % 5) - 2) / 2)), min(1.0, max(0.0, cy + s * ((k // 5) - 1.5) / 2)), 2)
                 for k in range(17))


def crowd(n: int = 10, *, with_car: bool = False, layout_id: str = "crowd") -> Layout:
    objs = []
    for i in range(n):
        w = 0.06 + 0.012 * i  # person i is larger than person i - 1
        x0, y0 = (i % 5) * 0.19, (i // 5) * 0.5
        objs.append(GroundedObject("a person", (x0, y0, x0 + w, y0 + 2 * w), category="person",
                                   keypoints=person(x0 + w / 2, y0 + w)))  # fmt: skip
    if with_car:
        objs.insert(3, GroundedObject("a car", (0.3, 0.3, 0.4, 0.4), category="car"))
    return Layout(layout_id, f"{n} people", tuple(objs))


def _jsonl(path: Path, layouts) -> Path:
    path.write_text("".join(json.dumps(lay.to_dict()) + "\n" for lay in layouts))
    return path


# --------------------------------------------------------------------------------------------
# persons with keypoints: one selection, at loading time


def test_keypoint_layouts_keep_the_persons_the_generator_grounds(tmp_path):
    import torch

    from gligen_eval.generation.keypoint_net import pack_keypoints
    from gligen_eval.scoring import coco
    from gligen_eval.scoring.pipeline import evaluate_boxes, evaluate_keypoints

    src = _jsonl(tmp_path / "kp.jsonl", [crowd(10), crowd(10, with_car=True, layout_id="mixed"), crowd(3, layout_id="few")])
    with pytest.warns(LayoutWarning, match=r"1?2 layouts had more than 8 persons with keypoints"):
        lays = {lay.layout_id: lay for lay in load_layouts(str(src))}
    ten = crowd(10)
    # a keypoint layout keeps its 8 largest persons, in layout order; the 2 smallest are gone
    assert lays["crowd"].objects == ten.objects[2:]
    # a layout with other objects keeps every box; only the 8 largest persons keep keypoints
    mixed = lays["mixed"]
    assert len(mixed.objects) == 11 and mixed.objects[3].phrase == "a car"
    assert [i for i, o in enumerate(mixed.objects) if o.keypoints is None] == [0, 1, 3]
    assert lays["few"] == crowd(3, layout_id="few")

    # the generator packs exactly these persons (every slot used, the same keypoints) ...
    lay = lays["crowd"]
    persons = [o for o in lay.objects if o.keypoints is not None]
    points, masks = pack_keypoints([o.keypoints for o in persons], [(o.box[2] - o.box[0]) * (o.box[3] - o.box[1])
                                                                    for o in persons], max_persons=8)  # fmt: skip
    assert int(masks.sum()) == 8 * 17
    packed = {tuple(round(v, 6) for v in points[p * 17].tolist()) for p in range(8)}
    assert packed == {(round(o.keypoints[0][0], 6), round(o.keypoints[0][1], 6)) for o in persons}
    # ... and the scorers score these persons, no more
    s = SampleRecord(sample_key="k1", layout_id="crowd", seed=0, image="images/k1.png", width=64, height=64,
                     layout_hash=lay.content_hash(), settings_hash="s")
    dets = {"k1": [Detection(o.box, "person", 0.9, keypoints=o.keypoints) for o in persons]}
    kp_result, gt, _ = evaluate_keypoints([lay], [s], dets)
    assert len(gt["annotations"]) == 8 and kp_result.metrics["AP"] == pytest.approx(1.0)
    ev = evaluate_boxes([lay], [s], dets)
    assert len(ev.records) == 8 and ev.result.metrics["AP"] == pytest.approx(1.0)
    assert torch.equal(masks.view(8, 17).sum(1), torch.full((8,), 17.0))


def test_the_person_limit_is_an_option_of_every_source(tmp_path):
    src = _jsonl(tmp_path / "kp.jsonl", [crowd(10)])
    with pytest.warns(LayoutWarning, match="more than 4 persons"):
        assert len(load_layouts(str(src), max_persons=4)[0].objects) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_layouts(str(src), max_persons=12)[0].objects) == 10
    with pytest.warns(LayoutWarning, match="more than 2 persons; kept the 2 largest"):  # the COCO reader's own rule
        kp = load_layouts("sample-keypoints", max_persons=2)
    assert kp and all(len(lay.objects) <= 2 for lay in kp)
    with pytest.raises(GligenEvalError, match="max_persons must be a positive integer"):
        load_layouts(str(src), max_persons=0)
