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
    from gligen_eval.scoring.boxes import evaluate_boxes
    from gligen_eval.scoring.keypoints import evaluate_keypoints

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


# --------------------------------------------------------------------------------------------
# a closed-set detector on free-phrase layouts


HRS = {
    "a cat and a pedestrian on a sunny windowsill.": [
        ["cat", "pedestrian 1", "sunny windowsill", "car 2"],
        [[0, 0, 200, 200], [256, 0, 500, 300], [0, 300, 512, 512], [300, 320, 480, 500]]],
    "a dog.": [["a Dog"], [[100, 100, 400, 400]]],
}


def _hrs_layouts(tmp_path: Path) -> list[Layout]:
    p = tmp_path / "gpt_generated_box__spatial.json"
    p.write_text(json.dumps(HRS))
    return load_layouts(str(p))


def test_free_phrases_that_name_a_class_get_it(tmp_path):
    lays = _hrs_layouts(tmp_path)
    assert [[o.category for o in lay.objects] for lay in lays] == [["cat", None, None, "car"], ["dog"]]
    assert lays[0].phrases == ["cat", "pedestrian 1", "sunny windowsill", "car 2"]  # the phrases stay as written


class NamedDetector:
    """A closed-set detector (the 80 COCO classes) that finds each object where the layout put it, under
    the class a COCO detector would give it (a pedestrian is a ``person``; a windowsill is nothing)."""

    names = None  # set from COCO80_NAMES on first use
    LABELS = {"cat": "cat", "pedestrian 1": "person", "car 2": "car", "a Dog": "dog"}
    layouts: dict[str, Layout] = {}

    def __init__(self, weights: str, device: str = "cpu") -> None:
        from gligen_eval.scoring.coco import COCO80_NAMES

        self.names = dict(enumerate(COCO80_NAMES))
        self.name = "named-coco80"

    @classmethod
    def declared_classes(cls, config):  # known without building it (the preflight builds no model)
        from gligen_eval.scoring.coco import COCO80_NAMES

        return list(COCO80_NAMES)

    def fingerprint(self) -> str:
        return "named01"

    def detect(self, images: list) -> list[list[Detection]]:
        out = []
        for im in images:
            lay = NamedDetector.layouts[im.getpixel((0, 0))[0]]
            out.append([Detection(o.box, self.LABELS[o.phrase], 0.9) for o in lay.objects if o.phrase in self.LABELS])
        return out


def _scored_run(tmp_path: Path, lays: list[Layout], kind: str = f"{__name__}:NamedDetector"):
    from PIL import Image

    from gligen_eval import store
    from gligen_eval.config import config_from_dict
    from gligen_eval.records import stable_hash
    from gligen_eval.scoring.pipeline import score_run

    out = tmp_path / "run"
    source = tmp_path / "gpt_generated_box__spatial.json"
    cfg = config_from_dict({"name": "named", "out": str(out), "layouts": {"source": str(source)},
                            "detector": {"kind": kind, "weights": "none"}, "scoring": {"bootstrap": 0}})  # fmt: skip
    rd = store.RunDir(out)
    rd.root.mkdir(parents=True)
    samples = []
    NamedDetector.layouts = {}
    for i, lay in enumerate(lays):
        NamedDetector.layouts[i] = lay
        for seed in (0, 1):
            key = stable_hash([lay.layout_id, seed], length=20)
            rd.image_path(key).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), (i, seed, 0)).save(rd.image_path(key))
            samples.append(SampleRecord(sample_key=key, layout_id=lay.layout_id, seed=seed, image=rd.image_relpath(key),
                                        width=64, height=64, layout_hash=lay.content_hash(), settings_hash="s"))  # fmt: skip
    metrics, scorers = score_run(rd, cfg, lays, samples, device="cpu", progress=False)
    manifest = {"schema_version": store.SCHEMA_VERSION, "name": "named", "config": cfg.to_dict(),
                "models": {"generator": {"name": "toy"}, **scorers}, "layouts": {"source": "hrs.json"}}  # fmt: skip
    store.atomic_write_json(rd.path(store.MANIFEST), manifest)
    store.write_jsonl(rd.path(store.LAYOUTS), (lay.to_dict() for lay in lays))
    store.write_jsonl(rd.path(store.SAMPLES), (s.to_dict() for s in samples))
    return out, metrics, scorers


def test_a_closed_set_detector_scores_only_the_phrases_it_can_name(tmp_path, caplog):
    from gligen_eval.reporting import compare_runs
    from gligen_eval.reporting.compare import parse_gate

    lays = _hrs_layouts(tmp_path)
    with caplog.at_level("WARNING", logger="gligen_eval"):
        run, metrics, scorers = _scored_run(tmp_path, lays)
    warned = [r.getMessage() for r in caplog.records if "name no class of the detector" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 of 5 object classes/phrases")
    assert "'pedestrian 1'" in warned[0] and "'sunny windowsill'" in warned[0]
    # every object the detector can name was found where the layout put it: AP 1 on those
    assert metrics["box/AP"] == pytest.approx(1.0) and metrics["box/success"] == 1.0
    assert metrics["n_instances"] == 2 * 3 and metrics["n_instances_unmapped"] == 2 * 2
    assert scorers["detector"]["classes"][:3] == ["airplane", "apple", "backpack"]
    per_cat = json.loads((run / "breakdowns.json").read_text())["box/AP_per_category"]
    assert set(per_cat) == {"car", "cat", "dog"}
    # compare recomputes the same AP from the stored run, leaving out the same objects
    res = compare_runs(run, run, parse_gate({"metrics": {"box/AP": {"max_drop": 0.01}},
                                             "bootstrap": {"n_boot": 5, "n_boot_ap": 3}}))  # fmt: skip
    assert res.row("box/AP").baseline == metrics["box/AP"] and res.row("box/AP").note == ""
    assert "n_instances_unmapped" not in {r.key for r in res.rows}


def test_a_closed_set_detector_refuses_layouts_it_cannot_score(tmp_path):
    from gligen_eval.config import config_from_dict
    from gligen_eval.scoring.pipeline import preflight

    _hrs_layouts(tmp_path)  # the source file of the run config
    free = [Layout("f1", "a sunny windowsill", (GroundedObject("sunny windowsill", (0.1, 0.1, 0.9, 0.9)),)),
            Layout("f2", "a pedestrian", (GroundedObject("pedestrian 1", (0.2, 0.1, 0.5, 0.9)),))]
    with pytest.raises(GligenEvalError, match=r"none of the 2 object classes/phrases .* closed-set detector") as e:
        _scored_run(tmp_path, free)
    assert "\n" not in str(e.value) and "owlv2" in str(e.value)
    cfg = config_from_dict({"detector": {"kind": f"{__name__}:NamedDetector", "weights": "none"}})
    with pytest.raises(GligenEvalError, match="none of the 2"):  # before any image is generated
        preflight(cfg, device="cpu", layouts=free)
    preflight(cfg, device="cpu", layouts=_hrs_layouts(tmp_path))  # some map: no error


# --------------------------------------------------------------------------------------------
# file kinds


def test_a_csv_table_is_named_as_such(tmp_path):
    p = tmp_path / "HRS_spatial_compositions_prompts.csv"
    p.write_text("meta_prompt,obj1,obj2,obj3,obj4,rel1,rel2,synthetic_prompt\na horse below a car.,horse,car,,,below,,\n")
    for source in (str(p), f"hrs:{p}", f"nsr1k:{p}", f"jsonl:{p}"):
        with pytest.raises(InputError) as e:
            load_layouts(source)
        msg = str(e.value)
        assert "\n" not in msg and "CSV table is not a layout file" in msg and "gpt_generated_box_" in msg
        assert "malformed JSON" not in msg and str(p) in msg
