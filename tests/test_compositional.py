"""Compositional checks (counts, relations, colours, COCO-MIG) and the Grounding DINO detector kind,
with hand-computed answers."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from gligen_eval.errors import ConfigError, MissingWeightsError
from gligen_eval.records import Detection, GroundedObject, InstanceRecord, Layout, SampleRecord
from gligen_eval.scoring import compositional as comp

LEFT = (0.05, 0.3, 0.35, 0.7)
RIGHT = (0.65, 0.3, 0.95, 0.7)


def _layout(*objs, relations=(), lid="L"):
    return Layout(lid, "c", tuple(GroundedObject(phrase=p, box=b, category=c) for p, b, c in objs), relations=relations)


def _det(label, box, score=0.9):
    return Detection(box=box, label=label, score=score)


# -- relations ---------------------------------------------------------------------------------


def test_two_objects_swapped_left_right_fail_the_relation():
    lay = _layout(("a dog", LEFT, "dog"), ("a cat", RIGHT, "cat"))
    opts = comp.CompOptions()
    assert comp.pairs_to_check(lay, 0.05) == [(0, "left", 1)]
    right_place = comp.relation_rows(lay, [_det("dog", LEFT), _det("cat", RIGHT)], opts)
    swapped = comp.relation_rows(lay, [_det("dog", RIGHT), _det("cat", LEFT)], opts)
    assert [r["holds"] for r in right_place] == [True]
    assert [r["holds"] for r in swapped] == [False]
    missing = comp.relation_rows(lay, [_det("dog", LEFT)], opts)  # no cat detected: the pair fails
    assert [r["holds"] for r in missing] == [False]


def test_implied_relation_by_centres_with_margin():
    a, b = (0.0, 0.0, 0.2, 0.2), (0.0, 0.5, 0.2, 0.7)  # b is 0.5 below a
    assert comp.implied_relation(a, b, 0.05) == "above"
    assert comp.implied_relation(b, a, 0.05) == "below"
    near = (0.03, 0.02, 0.23, 0.22)  # centre offset 0.03 on x, 0.02 on y
    assert comp.implied_relation(a, near, 0.05) is None
    assert comp.implied_relation(a, near, 0.02) == "left"
    lay = _layout(("x", a, "x"), ("y", near, "y"))
    assert comp.pairs_to_check(lay, 0.05) == []
    with pytest.raises(ConfigError):
        comp.CompOptions(margin=0.7)


def test_stated_relation_is_used_instead_of_the_boxes():
    lay = _layout(("a dog", LEFT, "dog"), ("a cat", RIGHT, "cat"), relations=((1, "below", 0),))
    assert comp.pairs_to_check(lay, 0.05) == [(1, "below", 0)]
    dets = [_det("dog", (0.1, 0.0, 0.3, 0.2)), _det("cat", (0.6, 0.6, 0.8, 0.8))]
    assert [r["holds"] for r in comp.relation_rows(lay, dets, comp.CompOptions())] == [True]


def test_same_class_objects_get_distinct_detections():
    lay = _layout(("a dog", LEFT, "dog"), ("a dog", RIGHT, "dog"))
    far = [_det("dog", (0.4, 0.0, 0.45, 0.05), 0.95), _det("dog", (0.5, 0.9, 0.55, 0.95), 0.9)]  # IoU 0 with both
    got = comp.assign_detections(lay, [_det("dog", RIGHT, 0.5), _det("dog", LEFT, 0.6)] + far, 0.25)
    assert got[0].box == LEFT and got[1].box == RIGHT
    got = comp.assign_detections(lay, far, 0.25)  # no overlap: the most confident, each used once
    assert got[0].score == 0.95 and got[1].score == 0.9


def test_layout_relations_round_trip_and_stay_out_of_the_content_hash():
    lay = _layout(("a dog", LEFT, "dog"), ("a cat", RIGHT, "cat"), relations=((0, "left", 1),))
    assert Layout.from_dict(json.loads(json.dumps(lay.to_dict()))) == lay
    assert lay.content_hash() == _layout(("a dog", LEFT, "dog"), ("a cat", RIGHT, "cat")).content_hash()
    with pytest.raises(ValueError, match="relations"):
        _layout(("a dog", LEFT, "dog"), relations=((0, "left", 1),))
    with pytest.raises(ValueError, match="relations"):
        _layout(("a dog", LEFT, "dog"), ("a cat", RIGHT, "cat"), relations=((0, "near", 1),))


def test_nsr1k_and_hrs_layouts_carry_their_stated_relation(tmp_path):
    from gligen_eval.layouts import load_hrs, load_nsr1k
    from gligen_eval.layouts.external import prompt_relations

    nsr = [{"id": 1, "prompt": "a dog above a cat", "obj1": ["dog", [0.1, 0.1, 0.2, 0.2]], "obj2": ["cat", [0.1, 0.6, 0.2, 0.2]],
            "relation": "top"},
           {"id": 2, "prompt": "a dog next to a cat", "obj1": ["dog", [0.1, 0.1, 0.2, 0.2]],
            "obj2": ["cat", [0.5, 0.1, 0.2, 0.2]], "relation": "next to"}]  # fmt: skip
    p = tmp_path / "spatial.val.json"
    p.write_text(json.dumps(nsr))
    by_id = {lay.layout_id: lay for lay in load_nsr1k(p)}
    assert by_id["nsr1k-spatial-1"].relations == ((0, "above", 1),)
    assert by_id["nsr1k-spatial-2"].relations == ()  # no direction stated: the boxes decide
    assert prompt_relations("a banana above a dog and on a horse.", ["banana", "dog", "horse"]) == [
        (0, "above", 1), (0, "above", 2)]  # fmt: skip
    assert prompt_relations("a chair on the left of a dog.", ["chair", "dog"]) == [(0, "left", 1)]
    hrs = {"a horse below a car.": [["horse", "car"], [[120, 300, 360, 480], [110, 100, 380, 280]]]}
    h = tmp_path / "gpt_generated_box__spatial.json"
    h.write_text(json.dumps(hrs))
    assert load_hrs(h)[0].relations == ((0, "below", 1),)
    c = tmp_path / "gpt_generated_box__color.json"
    c.write_text(json.dumps({"a red dog on a blue car.": hrs["a horse below a car."]}))
    assert load_hrs(c)[0].relations == ()  # only spatial subsets state relations


# -- counting ----------------------------------------------------------------------------------


def test_counts_equal_and_unequal():
    lay = _layout(("a dog", LEFT, "dog"), ("a dog", RIGHT, "dog"), ("a cat", (0.4, 0.0, 0.6, 0.2), "cat"))
    dets = [_det("dog", LEFT), _det("dog", RIGHT), _det("cat", LEFT), _det("cat", RIGHT), _det("cat", LEFT, 0.1),
            _det("car", LEFT)]  # fmt: skip
    rows = comp.count_rows(lay, dets, 0.25)
    assert rows == [{"class": "cat", "expected": 1, "detected": 2}, {"class": "dog", "expected": 2, "detected": 2}]
    m = comp.count_metrics(rows)
    # TP = min(1,2) + min(2,2) = 3; detected 4, expected 3
    assert m["count_acc"] == 0.5
    assert m["count_precision"] == 3 / 4 and m["count_recall"] == 1.0
    assert m["count_f1"] == pytest.approx(2 * 3 / (4 + 3), abs=0, rel=1e-12)
    none = comp.count_metrics(comp.count_rows(lay, [], 0.25))
    assert none == {"count_acc": 0.0, "count_recall": 0.0, "count_f1": 0.0, "count_precision": 0.0}


# -- colours -----------------------------------------------------------------------------------


def _red_left_image():
    im = Image.new("RGB", (40, 20), (128, 128, 128))
    im.paste((220, 10, 10), (0, 0, 20, 20))  # left half red
    return im


def test_red_crop_passes_the_red_hsv_check_and_a_blue_one_fails():
    im = _red_left_image()
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    lay = _layout(("a red car", left, "car"), ("a blue car", left, "car"), ("a red cup", right, "cup"), ("a dog", right, "dog"))
    rows = comp.color_rows(im, lay, comp.CompOptions())
    assert [(r["object"], r["color"], r["hsv_ok"]) for r in rows] == [(0, "red", True), (1, "blue", False), (2, "red", False)]
    assert rows[0]["hsv_share"] == 1.0 and rows[1]["hsv_share"] == 0.0 and rows[2]["hsv_share"] == 0.0
    half = _layout(("a red car", (0.25, 0.0, 0.75, 1.0), "car"))  # half red, half gray
    assert comp.color_rows(im, half, comp.CompOptions())[0]["hsv_share"] == 0.5
    assert comp.color_rows(im, half, comp.CompOptions(hsv_min_share=0.6))[0]["hsv_ok"] is False


def test_phrase_colour_and_noun():
    assert comp.phrase_color("a red car", comp.default_colors()) == "red"
    assert comp.phrase_color("A Grey cat", comp.default_colors()) == "gray"
    assert comp.phrase_color("a car", comp.default_colors()) is None
    assert comp.phrase_noun("a red sports car", comp.default_colors()) == "sports car"


class _MeanColourClip:
    """A stand-in CLIP: an image embeds as its mean RGB, a text as the RGB of the colour it names."""

    RGB = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    def fingerprint(self):
        return "mean-colour"

    def embed_images(self, images):
        import numpy as np
        import torch

        rows = [np.asarray(im, dtype=float).reshape(-1, 3).mean(0) for im in images]
        return torch.nn.functional.normalize(torch.tensor(np.array(rows), dtype=torch.float32), dim=-1)

    def embed_texts(self, texts):
        import torch

        vecs = [next(v for k, v in self.RGB.items() if f" {k} " in t) for t in texts]
        return torch.nn.functional.normalize(torch.tensor(vecs), dim=-1)


def test_clip_zero_shot_colour_picks_the_closest_colour_prompt():
    judge = comp.ClipColorJudge(_MeanColourClip(), ["red", "green", "blue"])
    im = _red_left_image()
    lay = _layout(("a red car", (0.0, 0.0, 0.5, 1.0), "car"), ("a blue car", (0.0, 0.0, 0.5, 1.0), "car"))
    rows = comp.color_rows(im, lay, comp.CompOptions(colors=("red", "green", "blue")), judge)
    assert [(r["clip_color"], r["clip_ok"]) for r in rows] == [("red", True), ("red", False)]


# -- textures ----------------------------------------------------------------------------------


def test_phrase_texture_parsing():
    vocab = comp.default_textures()
    assert comp.phrase_texture("a striped shirt", vocab) == "striped"
    assert comp.phrase_texture("a shirt with stripes", vocab) == "striped"
    assert comp.phrase_texture("a polka-dot cup", vocab) == "dotted"
    assert comp.phrase_texture("a Checked scarf", vocab) == "checkered"
    assert comp.phrase_texture("a wood table", vocab) == "wooden"
    assert comp.phrase_texture("a metallic red car", vocab) == "metal"
    assert comp.phrase_texture("a fluffy furry cat on a tartan rug", vocab) == "furry"  # the first texture word
    assert comp.phrase_texture("a red car", vocab) is None
    assert comp.phrase_texture("a woodpecker", vocab) is None  # whole words only
    assert comp.phrase_texture("a striped shirt", ["dotted", "plaid"]) is None  # outside the vocabulary


class _ChosenTextureClip:
    """A stand-in CLIP: a text embeds one-hot on the texture it names; the i-th image embeds as the
    i-th chosen row, so each crop's similarities with the prompts are the numbers chosen here."""

    def __init__(self, vocab, rows):
        self.vocab, self.rows, self.n = list(vocab), list(rows), 0

    def fingerprint(self):
        return "chosen"

    def embed_texts(self, texts):
        import torch

        return torch.tensor([[1.0 if f" {t} " in x else 0.0 for t in self.vocab] for x in texts])

    def embed_images(self, images):
        import torch

        out = torch.tensor(self.rows[self.n:self.n + len(images)])
        self.n += len(images)
        return out


def test_clip_texture_judge_picks_the_most_similar_texture(tmp_path):
    vocab = ("striped", "dotted", "wooden")
    lay = _layout(("a striped shirt", (0.0, 0.0, 0.5, 1.0), "shirt"), ("a red car", (0.5, 0.0, 1.0, 1.0), "car"),
                  ("a polka-dot cup", (0.5, 0.0, 1.0, 1.0), None))  # fmt: skip
    options = comp.CompOptions(textures=vocab)
    scorer = _ChosenTextureClip(vocab, [[0.30, 0.10, 0.20], [0.25, 0.20, 0.21]])  # shirt: striped; cup: striped
    prompts = []
    judge = comp.ClipTextureJudge(scorer, vocab)
    orig = scorer.embed_texts
    scorer.embed_texts = lambda texts: prompts.extend(texts) or orig(texts)
    rows = comp.texture_rows(_red_left_image(), lay, options, judge)
    assert rows == [{"object": 0, "texture": "striped", "clip_texture": "striped", "clip_ok": True},
                    {"object": 2, "texture": "dotted", "clip_texture": "striped", "clip_ok": False}]  # fmt: skip
    assert "a photo of a dotted cup" in prompts and "a photo of a wooden shirt" in prompts  # the noun fills the prompt

    # through the pass: the colour judge's CLIP runs the texture check; one of two textures right
    s = _write_image(tmp_path, "s1.png", _red_left_image())
    scorer = _ChosenTextureClip(vocab, [[0.30, 0.10, 0.20], [0.10, 0.50, 0.20]])
    m, out_rows = comp.score_compositional(tmp_path, [lay], [s], {"s1": []}, [], options,
                                           texture_judge=comp.ClipTextureJudge(scorer, vocab))  # fmt: skip
    assert m["comp/texture_acc_clip"] == 1.0 and len(out_rows[0]["textures"]) == 2
    scorer = _ChosenTextureClip(vocab, [[0.30, 0.10, 0.20], [0.60, 0.50, 0.20]])
    m, out_rows = comp.score_compositional(tmp_path, [lay], [s], {"s1": []}, [], options,
                                           texture_judge=comp.ClipTextureJudge(scorer, vocab))  # fmt: skip
    assert m["comp/texture_acc_clip"] == 0.5
    assert comp.layout_values(out_rows)["comp/texture_acc_clip"] == {"L": [1.0, 0.0]}
    # a run's CLIP colour judge brings the texture check along (its scorer, the options' textures)
    scorer = _ChosenTextureClip(vocab, [[0.0, 0.0, 0.0], [0.30, 0.10, 0.20], [0.10, 0.50, 0.20]])  # red car first
    m, _ = comp.score_compositional(tmp_path, [lay], [s], {"s1": []}, [], options,
                                    judge=comp.ClipColorJudge(scorer, ["red", "blue"]))  # fmt: skip
    assert m["comp/texture_acc_clip"] == 1.0 and "comp/color_acc_clip" in m
    # no texture word in any phrase: no key
    plain = _layout(("a red car", (0.0, 0.0, 0.5, 1.0), "car"))
    m, _ = comp.score_compositional(tmp_path, [plain], [s], {"s1": []}, [], options,
                                    texture_judge=comp.ClipTextureJudge(_ChosenTextureClip(vocab, []), vocab))  # fmt: skip
    assert "comp/texture_acc_clip" not in m
    with pytest.raises(ConfigError, match="textures"):
        comp.CompOptions(textures=("striped",))


def test_texture_key_is_declared_and_higher_is_better():
    from gligen_eval.reporting import metricinfo

    assert "comp/texture_acc_clip" in comp.COMP_KEYS
    assert metricinfo.higher_is_better("comp/texture_acc_clip")


# -- COCO-MIG ----------------------------------------------------------------------------------


def test_mig_levels_isr_and_miou():
    items = [(2, 0.8, True), (2, 0.6, False), (3, 0.3, True), (7, 0.9, True)]
    m = comp.mig_metrics(items, 0.5)
    # successes: 0.8 (colour ok) and 0.9; the colour failure at IoU 0.6 counts 0 in mIoU; 0.3 counts as is
    assert m["mig/ISR"] == 2 / 4
    assert m["mig/mIoU"] == pytest.approx((0.8 + 0.0 + 0.3 + 0.9) / 4, rel=1e-12)
    assert m["mig/L2/ISR"] == 0.5 and m["mig/L2/mIoU"] == pytest.approx(0.4, rel=1e-12)
    assert m["mig/L3/ISR"] == 0.0 and m["mig/L3/mIoU"] == pytest.approx(0.3, rel=1e-12)
    assert not any(k.startswith(("mig/L4", "mig/L7")) for k in m)


def _coco_file(tmp_path):
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "car"}]
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3, 4)]
    anns, n = [], 0
    for image_id, cat_ids in {1: [1, 2, 3], 2: [2, 2, 3, 3, 1, 1], 3: [2], 4: [2] * 8}.items():
        for k, c in enumerate(cat_ids):
            n += 1
            anns.append({"id": n, "image_id": image_id, "category_id": c, "bbox": [5 * k, 5 * k, 10 + k, 10 + k],
                         "area": 1.0, "iscrowd": 0})  # fmt: skip
    p = tmp_path / "instances_tiny.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return p


def test_coco_mig_layouts_from_coco_annotations(tmp_path):
    from gligen_eval.layouts import load_layouts
    from gligen_eval.layouts.coco_mig import coco_mig_colors, load_coco_mig

    p = _coco_file(tmp_path)
    lays = load_coco_mig(p, seed=3)
    by_id = {lay.layout_id: lay for lay in lays}
    assert sorted(by_id) == ["mig-1", "mig-2", "mig-4"]  # image 3 has one instance (below L2)
    assert [lay.source for lay in lays] == ["coco-mig/L2", "coco-mig/L4", "coco-mig/L6"]
    assert all(o.category != "person" for lay in lays for o in lay.objects)
    assert len(by_id["mig-4"].objects) == 6  # eight dogs: the six largest
    for lay in lays:
        for o in lay.objects:
            article, color, name = o.phrase.split(" ", 2)
            assert article == "a" and color in coco_mig_colors() and name == o.category
        assert lay.caption == ", ".join(lay.phrases[:-1]) + " and " + lay.phrases[-1]
    assert [lay.phrases for lay in load_coco_mig(p, seed=3)] == [lay.phrases for lay in lays]  # seeded
    assert any(a.phrases != b.phrases for a, b in zip(load_coco_mig(p, seed=4), lays))
    assert len(load_layouts(f"coco-mig:{p}", limit=1)) == 3  # limit is per level
    assert len(load_layouts("sample-mig")) > 0


def _write_image(root, name, im):
    (root / "images").mkdir(exist_ok=True)
    im.save(root / "images" / name)
    return SampleRecord(sample_key=name[:-4], layout_id="L", seed=0, image=f"images/{name}", width=im.width,
                        height=im.height, layout_hash="h", settings_hash="s")  # fmt: skip


def test_score_compositional_on_cached_detections(tmp_path):
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    lay = _layout(("a red car", left, "car"), ("a blue dog", right, "dog"))
    s = _write_image(tmp_path, "s1.png", _red_left_image())
    dets = {"s1": [_det("car", left), _det("dog", (0.5, 0.0, 0.75, 1.0))]}  # the dog box has IoU 0.5
    recs = [InstanceRecord("s1", "L", 0, 0, "a red car", "car", left, 1.0, True, ""),
            InstanceRecord("s1", "L", 0, 1, "a blue dog", "dog", right, 0.5, True, "")]
    m, rows = comp.score_compositional(tmp_path, [lay], [s], dets, recs, comp.CompOptions(mig=True))
    assert m["comp/count_acc"] == 1.0 and m["comp/count_f1"] == 1.0
    assert m["comp/relation_acc"] == 1.0
    assert m["comp/color_acc_hsv"] == 0.5  # red car yes, blue dog (gray pixels) no
    assert "comp/color_acc_clip" not in m  # no CLIP judge
    assert m["mig/ISR"] == 0.5 and m["mig/mIoU"] == 0.5 and m["mig/L2/ISR"] == 0.5  # the dog's colour fails: IoU 0
    assert rows[0]["sample_key"] == "s1" and len(rows[0]["colors"]) == 2
    assert rows[0]["mig"] == [{"object": 0, "iou": 1.0, "success": True, "value": 1.0},
                              {"object": 1, "iou": 0.5, "success": False, "value": 0.0}]  # fmt: skip
    # pooled means over layouts reproduce the keys; intervals (one layout: every draw is it) hold them
    values = comp.layout_values(rows)
    for key in ("comp/count_acc", "comp/relation_acc", "comp/color_acc_hsv", "mig/ISR", "mig/mIoU"):
        assert sum(values[key]["L"]) / len(values[key]["L"]) == m[key]
    ci = comp.intervals(rows, list(m), n_boot=50, alpha=0.05, seed=0)
    assert ci["comp/color_acc_hsv/lo"] == ci["comp/color_acc_hsv/hi"] == 0.5
    assert "comp/count_f1/lo" not in ci and "mig/L2/ISR/lo" not in ci


def test_comp_config_section():
    from gligen_eval.config import comp_options, config_from_dict

    cfg = config_from_dict({"comp": {"enabled": True, "margin": 0.1}, "scoring": {"instance_min_score": 0.4}})
    o = comp_options(cfg)
    assert o.margin == 0.1 and o.min_score == 0.4 and "red" in o.colors
    with pytest.raises(ConfigError, match="comp"):
        config_from_dict({"comp": {"enabled": True, "colors": ["red"]}})
    with pytest.raises(ConfigError, match="comp.bogus"):
        config_from_dict({"comp": {"bogus": 1}})


# -- Grounding DINO ----------------------------------------------------------------------------


def test_grounding_dino_prompt_and_phrase_tokens():
    from gligen_eval.scoring.grounding_dino import build_prompt, phrase_token_masks, tiny_bert_tokenizer

    prompt, spans = build_prompt(["A red  dog", "cat"])
    assert prompt == "a red dog. cat." and spans == [(0, 9), (11, 14)]
    tok = tiny_bert_tokenizer()(prompt, return_offsets_mapping=True)
    assert tok["input_ids"][0] == 101 and tok["input_ids"][-1] == 102 and 1012 in tok["input_ids"]
    masks = phrase_token_masks(tok["offset_mapping"], spans, len(tok["input_ids"]))
    words = [prompt[a:b] for a, b in tok["offset_mapping"]]
    assert "".join(w for w, m in zip(words, masks[0].tolist()) if m) == "areddog"
    assert "".join(w for w, m in zip(words, masks[1].tolist()) if m) == "cat"


@pytest.fixture(scope="module")
def tiny_gd():
    from gligen_eval.scoring.grounding_dino import tiny_grounding_dino

    return tiny_grounding_dino(seed=0)


@pytest.mark.slow
def test_tiny_grounding_dino_builds_and_detects_offline(tiny_gd):
    from gligen_eval.scoring.detectors import detector_kinds
    from gligen_eval.scoring.grounding_dino import GroundingDinoDetector

    assert "grounding-dino" in detector_kinds()
    model, processor = tiny_gd
    det = GroundingDinoDetector(model=model, processor=processor, conf=0.0, text_threshold=0.0, device="cpu")
    images = [Image.new("RGB", (64, 64), (200, 20, 20)), Image.new("RGB", (48, 64), (20, 20, 200))]
    out = det.detect(images, [["a red dog", "a cat"], ["car"]])
    assert len(out) == 2 and len(out[0]) == 20 and len(out[1]) == 20  # every query box at thresholds 0
    assert {d.label for d in out[0]} <= {"a red dog", "a cat"} and {d.label for d in out[1]} == {"car"}
    for d in out[0] + out[1]:
        assert 0.0 <= d.box[0] < d.box[2] <= 1.0 and 0.0 <= d.box[1] < d.box[3] <= 1.0 and 0.0 < d.score < 1.0
    scores = [d.score for d in out[0]]
    assert scores == sorted(scores, reverse=True)
    strict = GroundingDinoDetector(model=model, processor=processor, conf=0.0, text_threshold=float(scores[4]),
                                   device="cpu")  # fmt: skip
    assert [d.score for d in strict.detect(images[:1], [["a red dog", "a cat"]])[0]] == pytest.approx(scores[:5], abs=1e-6)
    assert det.detect(images[:1], [[]]) == [[]]
    assert det.fingerprint() != strict.fingerprint()
    by_class = GroundingDinoDetector(model=model, processor=processor, conf=0.0, text_threshold=0.0, device="cpu",
                                     prompts="categories")  # fmt: skip
    assert by_class.fingerprint() != det.fingerprint()  # cached detections never cross prompt modes
    with pytest.raises(ConfigError, match="prompts"):
        GroundingDinoDetector(model=model, processor=processor, prompts="captions", device="cpu")


def test_grounding_dino_missing_weights_name_what_to_fetch(tmp_path):
    from gligen_eval.scoring.grounding_dino import GroundingDinoDetector

    with pytest.raises(MissingWeightsError, match="grounding-dino"):
        GroundingDinoDetector(weights=str(tmp_path / "IDEA-Research-grounding-dino-tiny"), device="cpu")
    with pytest.raises(ConfigError):
        GroundingDinoDetector(weights="x", conf=1.5, device="cpu")


def test_score_compositional_keys_are_finite_fractions():
    m = comp.mig_metrics([(2, 0.2, True)], 0.5)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in m.values())


@pytest.mark.slow
def test_smoke_coco_mig_run_has_every_key_in_metrics_report_and_compare(tmp_path):
    """The shipped smoke config (one layout per level, 2 steps): every comp/ and mig/ key is in
    metrics.json, the leaderboard and the compare table."""
    from pathlib import Path

    from gligen_eval.cli import main
    from gligen_eval.reporting.compare import compare_runs

    config = Path(__file__).resolve().parents[1] / "benchmarks" / "smoke-coco-mig.yaml"
    out = tmp_path / "mig"
    assert main(["run", str(config), "--out", str(out), "--set", "layouts.limit=1", "--set", "sampler.steps=2",
                 "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    keys = [k for k in comp.COMP_KEYS + comp.MIG_KEYS if k != "comp/texture_acc_clip"]  # COCO-MIG names colours only
    assert set(keys) <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in keys)
    assert metrics["n_layouts"] == 5  # one per level L2..L6
    rows = [json.loads(x) for x in (out / comp.COMP_ROWS).read_text().splitlines()]
    assert len(rows) == metrics["n_samples"]
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert all(k in board for k in ("comp/count_acc", "comp/relation_acc", "comp/color_acc_clip", "mig/L6/mIoU"))
    res = compare_runs(out, out)
    assert {"comp/count_f1", "comp/color_acc_hsv", "mig/ISR", "mig/L2/ISR"} <= {r.key for r in res.rows}
    for key in ("comp/count_acc", "comp/relation_acc", "comp/color_acc_hsv", "mig/ISR", "mig/mIoU"):
        row = res.row(key)  # paired over layouts from comp.jsonl; the run against itself: exactly 0
        assert "comp.jsonl" in row.method and row.baseline == pytest.approx(metrics[key]), key
        assert row.diff == row.lo == row.hi == 0.0, key
    assert res.row("mig/L2/ISR").method.startswith("point values")  # a per-level share: not pooled over layouts


def test_published_spatial_sets_state_their_relations(reference_dir):
    """The NSR-1K spatial file and the HRS spatial file: every directional record keeps its relation."""
    import csv
    import warnings

    from gligen_eval.layouts import load_hrs, load_nsr1k

    nsr_path = reference_dir / "layoutgpt_nsr1k" / "spatial.val.json"
    hrs_path = reference_dir / "attention_refocusing_hrs" / "gpt_generated_box__spatial.json"
    if not nsr_path.is_file() or not hrs_path.is_file():
        pytest.skip("NSR-1K / HRS spatial files not in the reference data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nsr, hrs = load_nsr1k(nsr_path), load_hrs(hrs_path)
    raw = {f"nsr1k-spatial-{r['id']}": r["relation"] for r in json.loads(nsr_path.read_text())}
    expect = {"left": "left", "right": "right", "top": "above", "bottom": "below"}
    for lay in nsr:
        want = expect.get(raw[lay.layout_id])
        assert lay.relations == (((0, want, 1),) if want and len(lay.objects) == 2 else ())
    assert sum(bool(lay.relations) for lay in nsr) > 200
    # HRS: the prompts' first relation (rel1 of the prompt table) for the directional ones
    table = reference_dir / "attention_refocusing_hrs" / "HRS_spatial_compositions_prompts.csv"
    words = {"on the left of": "left", "on the right of": "right", "above": "above", "over": "above", "on": "above",
             "below": "below", "under": "below", "beneath": "below"}  # fmt: skip
    rows = list(csv.DictReader(table.open())) if table.is_file() else []
    rel1 = {" ".join(r["meta_prompt"].split()): words.get(r["rel1"]) for r in rows}
    checked = 0
    for lay in hrs:
        want = rel1.get(lay.caption)
        if want and len(lay.objects) >= 2 and lay.relations:
            assert lay.relations[0][1] == want, lay.caption
            checked += 1
    assert checked > 200 or not rel1
