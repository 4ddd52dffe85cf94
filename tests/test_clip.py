"""CLIP scores with a tiny random CLIPModel, checked against a direct functional computation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.records import GroundedObject, Layout
from gligen_eval.scoring.clip import (
    ClipSampleScores,
    ClipScorer,
    box_to_pixels,
    clip_metrics,
    clip_score,
    crop_box,
    projected_embeddings,
    tiny_clip,
)


@pytest.fixture(scope="module")
def tiny():
    return tiny_clip(seed=0)


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return ClipScorer(model, processor, name="tiny-clip", device="cpu", batch_size=3)


def _img(seed, size=(48, 40)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _by_hand_image(model, processor, images):
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        emb = model.visual_projection(pooled)
    return emb / emb.norm(dim=-1, keepdim=True)


def _by_hand_text(model, processor, texts):
    tok = processor.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        pooled = model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
        emb = model.text_projection(pooled)
    return emb / emb.norm(dim=-1, keepdim=True)


def _expected(a, b, w):
    return [w * max(float(v), 0.0) for v in (a * b).sum(-1)]


def test_global_scores_equal_a_direct_computation(tiny, scorer):
    model, processor = tiny
    images = [_img(i) for i in range(5)]
    captions = ["a red car on a road", "two dogs", "a cat", "a bowl of fruit on a table", "x" * 300]
    got = scorer.global_scores(images, captions)
    want = _expected(_by_hand_image(model, processor, images), _by_hand_text(model, processor, captions), 100.0)
    assert got == pytest.approx(want, abs=1e-4)
    assert any(g > 0 for g in got)
    # the CLIP-S scale is the same cosine with w = 2.5
    s25 = ClipScorer(model, processor, weight=2.5, device="cpu")
    assert s25.global_scores(images, captions) == pytest.approx([g * 0.025 for g in got], abs=1e-5)


def test_negative_cosines_are_clamped_to_zero():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    assert clip_score(a, b, 100.0).tolist() == pytest.approx([0.0, 100.0 / np.sqrt(2.0), 100.0])
    with pytest.raises(ValueError, match="same shape"):
        clip_score(a, b[:2])


def test_regional_scores_use_the_box_crops(tiny, scorer):
    model, processor = tiny
    images = [_img(10, (64, 48)), _img(11, (32, 32))]
    boxes = [[(0.0, 0.0, 0.5, 0.5), (0.25, 0.5, 1.0, 1.0)], [(0.1, 0.1, 0.9, 0.4)]]
    phrases = [["a dog", "a bicycle"], ["a kite"]]
    got = scorer.regional_scores(images, boxes, phrases)
    assert [len(r) for r in got] == [2, 1]
    crops = [images[0].crop((0, 0, 32, 24)), images[0].crop((16, 24, 64, 48)), images[1].crop((3, 3, 29, 13))]
    want = _expected(_by_hand_image(model, processor, crops), _by_hand_text(model, processor, ["a dog", "a bicycle", "a kite"]), 100.0)
    assert [v for r in got for v in r] == pytest.approx(want, abs=1e-4)


def test_image_grounding_scores_compare_crop_and_reference(tiny, scorer):
    model, processor = tiny
    image = _img(20, (64, 64))
    ref_same = image.crop((0, 0, 32, 32))
    ref_other = _img(21, (32, 32))
    got = scorer.image_grounding_scores([image], [[(0.0, 0.0, 0.5, 0.5), (0.0, 0.0, 0.5, 0.5)]], [[ref_same, ref_other]])[0]
    assert got[0] == pytest.approx(100.0, abs=1e-3)  # identical pixels -> cosine 1
    want = _expected(_by_hand_image(model, processor, [ref_same]), _by_hand_image(model, processor, [ref_other]), 100.0)
    assert got[1] == pytest.approx(want[0], abs=1e-4)


def test_score_layouts_places_scores_by_object(tmp_path, scorer):
    ref = _img(30, (20, 20))
    ref.save(tmp_path / "ref.png")
    lay = Layout("L1", "a dog and a ball", (
        GroundedObject("a dog", (0.0, 0.0, 0.5, 1.0)),
        GroundedObject("", (0.5, 0.0, 1.0, 1.0), reference_image="ref.png"),
        GroundedObject("a ball", (0.2, 0.2, 0.4, 0.4), reference_image=str(tmp_path / "ref.png")),
    ))  # fmt: skip
    image = _img(31, (40, 40))
    (row,) = scorer.score_layouts([image], [lay], reference_root=tmp_path)
    assert row.global_score == pytest.approx(scorer.global_scores([image], [lay.caption])[0], abs=1e-5)
    assert row.regional[1] is None and row.regional[0] is not None and row.regional[2] is not None
    assert row.image[0] is None and row.image[1] is not None and row.image[2] is not None
    assert row.regional[2] == pytest.approx(scorer.regional_scores([image], [[lay.objects[2].box]], [["a ball"]])[0][0], abs=1e-5)
    assert set(row.to_dict()) == {"clip/global", "clip/regional", "clip/image"}
    with pytest.raises(InputError, match=r"ref\.png \[layout L1 object 1\]: reference image not found"):
        scorer.score_layouts([image], [lay], reference_root=tmp_path / "elsewhere")
    # without reference_root the layout's source_dir (its layout file's folder, set when it was loaded) serves
    from dataclasses import replace

    (again,) = scorer.score_layouts([image], [replace(lay, source_dir=str(tmp_path))])
    assert again.image == pytest.approx(row.image, abs=1e-6)
    with pytest.raises(InputError, match="reference image not found"):
        scorer.score_layouts([image], [lay])


def test_crops_and_pixel_rectangles():
    assert box_to_pixels((0.1, 0.2, 0.55, 0.61), 100, 50) == (10, 10, 55, 31)
    # a sliver grows to min_px around its centre, inside the image
    assert box_to_pixels((0.999, 0.0, 1.0, 0.001), 100, 100, min_px=4) == (96, 0, 100, 4)
    img = Image.fromarray(np.full((40, 80, 3), 200, dtype=np.uint8))
    tight = crop_box(img, (0.0, 0.0, 1.0, 0.5))
    assert tight.size == (80, 20)
    padded = crop_box(img, (0.0, 0.0, 1.0, 0.5), "pad-square", fill=(1, 2, 3))
    assert padded.size == (80, 80)
    arr = np.asarray(padded)
    assert tuple(arr[0, 0]) == (1, 2, 3) and tuple(arr[40, 40]) == (200, 200, 200)


def test_both_transformers_output_shapes_are_understood(tiny, scorer, monkeypatch):
    model, _ = tiny
    t = torch.randn(2, 16)

    class Out:
        pooler_output = t

    assert projected_embeddings(t) is t
    assert projected_embeddings(Out()) is t
    assert projected_embeddings((torch.zeros(2, 5, 32), t)) is t
    with pytest.raises(TypeError):
        projected_embeddings({"x": 1})
    # transformers-4 behaviour: get_image_features returns the tensor itself
    images = [_img(40), _img(41)]
    v5 = scorer.embed_images(images)
    real = model.get_image_features
    monkeypatch.setattr(model, "get_image_features", lambda **kw: real(**kw).pooler_output)
    assert torch.allclose(scorer.embed_images(images), v5, atol=1e-6)


def test_clip_metrics_pool_over_layouts_with_intervals():
    rows = {
        "a": [ClipSampleScores(30.0, [20.0, None], [None, 80.0]), ClipSampleScores(32.0, [22.0, None], [None, 90.0])],
        "b": [ClipSampleScores(28.0, [10.0, 12.0], [None, None])],
    }
    m = clip_metrics(rows, n_boot=200)
    assert m["clip/global"] == pytest.approx(30.0)
    assert m["clip/regional"] == pytest.approx(16.0)
    assert m["clip/image"] == pytest.approx(85.0)
    assert m["clip/global/lo"] <= 30.0 <= m["clip/global/hi"]
    assert "clip/image" not in clip_metrics({"b": rows["b"]}, ci=False)


def test_real_ids_load_only_from_local_files(tmp_path, tiny):
    t0 = time.monotonic()
    with pytest.raises(MissingWeightsError, match="openai/clip-vit-base-patch32.*downloads are disabled"):
        ClipScorer.from_pretrained("openai/clip-vit-base-patch32", cache_dir=str(tmp_path / "hf"), device="cpu")
    assert time.monotonic() - t0 < 30  # refused at once, no network retries
    model, processor = tiny
    folder = tmp_path / "tiny-clip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    loaded = ClipScorer.from_pretrained(str(folder), device="cpu")
    a, b = loaded.global_scores([_img(50)], ["a dog"]), ClipScorer(model, processor, device="cpu").global_scores([_img(50)], ["a dog"])
    assert a == pytest.approx(b, abs=1e-5)
    assert loaded.fingerprint() == ClipScorer(model, processor, name=str(folder), device="cpu").fingerprint()
    assert loaded.fingerprint() != ClipScorer(model, processor, name=str(folder), weight=2.5, device="cpu").fingerprint()


def test_a_near_empty_tokenizer_is_refused(tiny):
    from transformers import CLIPTokenizer

    model, processor = tiny

    class P:
        tokenizer = CLIPTokenizer()  # the 2-token tokenizer an offline hub look-up can produce
        image_processor = processor.image_processor

    with pytest.raises(MissingWeightsError, match="has 2 tokens but the model expects 514"):
        ClipScorer(model, P(), device="cpu")
    with pytest.raises(ConfigError, match="crop"):
        ClipScorer(model, processor, crop="loose", device="cpu")  # type: ignore[arg-type]
