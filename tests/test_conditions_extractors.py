"""Extractors: HED weight layouts and safe loading, depth/sem/normal models (tiny, random), missing weights."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from gligen_eval.conditions import extract_condition, extract_conditions, load_condition
from gligen_eval.conditions import estimators
from gligen_eval.conditions.hed import ControlNetHED, OriginalHED, hed_edges, load_hed, tiny_hed
from gligen_eval.errors import InputError, MissingWeightsError
from gligen_eval.records import Layout


def photo(h=40, w=48, seed=0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[10:30, 12:36] = 255
    return img


def seeded(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def test_hed_full_size_layouts_match_the_released_keys():
    orig = OriginalHED().state_dict()
    assert orig["netVggOne.0.weight"].shape == (64, 3, 3, 3) and orig["netVggFiv.5.weight"].shape == (512, 512, 3, 3)
    assert orig["netScoreFou.weight"].shape == (1, 512, 1, 1) and orig["netCombine.0.weight"].shape == (1, 5, 1, 1)
    assert len([k for k in orig if k.startswith("netVgg")]) == 26  # 13 convs
    cn = ControlNetHED().state_dict()
    assert cn["norm"].shape == (1, 3, 1, 1) and cn["block5.convs.2.weight"].shape == (512, 512, 3, 3)
    assert cn["block1.projection.weight"].shape == (1, 64, 1, 1) and len(cn) == 1 + 2 * (13 + 5)


def test_hed_weight_files_load_safely_in_both_layouts(tmp_path):
    from safetensors.torch import save_file

    img = photo()
    net = tiny_hed(seed=3)
    want = hed_edges(net, [img], "cpu")[0]
    assert want.dtype == np.uint8 and want.shape == img.shape[:2] and len(np.unique(want)) > 3
    # the original port's old "module*" names, as safetensors
    save_file({k.replace("net", "module", 1): v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "hed.safetensors"))
    np.testing.assert_array_equal(extract_condition(img, "hed", hed_weights=str(tmp_path / "hed.safetensors")), want)
    # ControlNet's layout as a plain torch state dict (weights_only)
    cn = seeded(ControlNetHED((4, 8, 8, 8, 8)), 5)
    torch.save(cn.state_dict(), tmp_path / "cn.pth")
    np.testing.assert_array_equal(extract_condition(img, "hed", hed_weights=str(tmp_path / "cn.pth")),
                                  hed_edges(cn, [img], "cpu")[0])  # fmt: skip
    # a pickle that needs code is refused; a state dict of something else is named as such
    torch.save({"model": SimpleNamespace(a=1)}, tmp_path / "evil.pth")
    with pytest.raises(InputError, match=r"evil\.pth: not a plain state dict"):
        load_hed(str(tmp_path / "evil.pth"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(InputError, match=r"broken\.safetensors: not a readable safetensors file"):
        load_hed(str(tmp_path / "broken.safetensors"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not a HED state dict"):
        load_hed(str(tmp_path / "other.pth"))


def test_hed_forward_conventions():
    x = torch.from_numpy(photo()).permute(2, 0, 1)[None].float()
    # ControlNet layout: constant side outputs 1..5 → sigmoid of their mean, 3, everywhere
    cn = seeded(ControlNetHED((4, 4, 4, 4, 4)), 1)
    with torch.no_grad():
        for i in range(1, 6):
            getattr(cn, f"block{i}").projection.weight.zero_()
            getattr(cn, f"block{i}").projection.bias.fill_(float(i))  # mean of 1..5 = 3
    np.testing.assert_allclose(cn(x).detach().numpy(), 1 / (1 + np.exp(-3.0)), rtol=1e-6)
    # original layout: the first conv sees BGR minus the Caffe means; a conv that picks input channel 0 and a
    # side output of stage one only give sigmoid(B - 104.007) on every pixel
    net = OriginalHED((1, 1, 1, 1, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.netVggOne[0].weight[0, 0, 1, 1] = 1.0
        net.netVggOne[2].weight[0, 0, 1, 1] = 1.0
        net.netScoreOne.weight.fill_(1.0)
        net.netCombine[0].weight[0, 0] = 1.0
        out = net(x)[0].numpy()
    blue = x[0, 2].numpy()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-np.maximum(blue - 104.00698793, 0))), rtol=1e-5)


@pytest.mark.slow
def test_missing_weights_fail_fast_with_what_to_fetch(tmp_path):
    import diffusers  # noqa: F401  (import time is not what is measured)
    import transformers  # noqa: F401

    img = photo()
    cases = [("hed", {}, "grounding.hed_weights"), ("hed", {"hed_weights": str(tmp_path / "x.pth")}, "not found"),
             ("depth", {}, "hf download Intel/dpt-hybrid-midas"), ("sem", {}, "openmmlab/upernet-convnext-small"),
             ("normal", {}, "prs-eth/marigold-normals"),
             ("depth", {"depth_model": str(tmp_path / "none")}, "folder not found")]  # fmt: skip
    for modality, opts, needle in cases:
        for limit in (60, 5):  # the first call pays the lazy imports; no hub retries either time
            t0 = time.perf_counter()
            with pytest.raises(MissingWeightsError, match=needle) as e:
                extract_condition(img, modality, **opts)
            assert time.perf_counter() - t0 < limit and "\n" not in str(e.value)


class _Batch(dict):
    def to(self, device):
        return self


class _FakeProcessor:
    def __call__(self, images, return_tensors):
        return _Batch(pixel_values=torch.zeros(len(images), 3, 4, 4))


class _FakeDepth:
    """Returns fixed predictions, so the post-processing is checked exactly."""

    def __init__(self, predicted: torch.Tensor, model_type: str = "dpt"):
        self.predicted, self.config = predicted, SimpleNamespace(model_type=model_type)

    def to(self, device):
        return self

    def __call__(self, **inputs):
        return SimpleNamespace(predicted_depth=self.predicted[: len(inputs["pixel_values"])])


def test_depth_is_near_bright_and_normalized_per_image():
    disparity = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 10.0], [10.0, 30.0]]])  # relative: near = large
    blank = [np.zeros((2, 2, 3), np.uint8)] * 2
    out = estimators.estimate_depth((_FakeProcessor(), _FakeDepth(disparity)), blank, "cpu")
    np.testing.assert_array_equal(out[0], [[0, 85], [170, 255]])  # min-max per image, * 255, truncated
    np.testing.assert_array_equal(out[1], [[0, 0], [0, 255]])
    metric = estimators.estimate_depth((_FakeProcessor(), _FakeDepth(disparity, "zoedepth")), blank[:1], "cpu")[0]
    assert metric[0, 0] == 255 and metric[1, 1] == 0  # metric depth (near = small) is inverted first


def test_tiny_depth_and_sem_models_and_their_folders(tmp_path):
    imgs = [photo(seed=0), photo(seed=1), photo(32, 32, seed=2)]
    depth = extract_conditions(imgs, "depth", depth_model="tiny")
    assert [d.shape for d in depth] == [(40, 48), (40, 48), (32, 32)] and all(d.dtype == np.uint8 for d in depth)
    assert all(d.min() == 0 and d.max() == 255 for d in depth)
    single = extract_condition(imgs[1], "depth", depth_model="tiny")  # batched = one at a time (±1 level)
    assert np.abs(single.astype(int) - depth[1]).max() <= 1
    sem = extract_conditions(imgs, "sem", sem_model="tiny")
    assert [s.shape for s in sem] == [(40, 48), (40, 48), (32, 32)]
    assert all(s.dtype == np.uint8 and 1 <= s.min() and s.max() <= 150 for s in sem)
    # the same models saved as folders load through the real from_pretrained path
    proc, model = estimators.tiny_depth()
    proc.save_pretrained(tmp_path / "depth")
    model.save_pretrained(tmp_path / "depth")
    np.testing.assert_array_equal(extract_condition(imgs[0], "depth", depth_model=str(tmp_path / "depth")), depth[0])
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    cfg = SegformerConfig(num_labels=19, depths=[1] * 4, hidden_sizes=[8, 8, 16, 16], num_attention_heads=[1] * 4,
                          decoder_hidden_size=16)  # fmt: skip
    SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path / "city")
    estimators.tiny_segmenter()[0].save_pretrained(tmp_path / "city")
    with pytest.raises(InputError, match="150 ADE20K classes.*19 labels"):
        extract_condition(imgs[0], "sem", sem_model=str(tmp_path / "city"))


def test_extracted_sem_map_through_load_condition(tmp_path):
    Image.fromarray(photo(48, 64)).save(tmp_path / "p.png")
    lay = Layout(layout_id="p", caption="", objects=(), image_path=str(tmp_path / "p.png"))
    y = load_condition(lay, "sem", size=32, map="extract", sem_model="tiny")
    assert y.shape == (32, 32) and y.dtype == np.int64 and 1 <= y.min() and y.max() <= 150
    full = extract_condition(tmp_path / "p.png", "sem", sem_model="tiny")[:, 8:56]
    assert set(np.unique(y)) <= set(np.unique(full))
    h = load_condition(lay, "hed", size=32, hed_weights="tiny")  # auto: no given map, a photo
    assert h.shape == (3, 32, 32) and -1 <= h.min() <= h.max() <= 1


@pytest.mark.slow
def test_tiny_marigold_normals_are_unit_vectors():
    out = extract_conditions([photo(), photo(32, 32, seed=1)], "normal", normal_model="tiny")
    assert [o.shape for o in out] == [(40, 48, 3), (32, 32, 3)] and all(o.dtype == np.uint8 for o in out)
    n = out[0].astype(np.float64) / 255 * 2 - 1
    assert np.abs(np.linalg.norm(n, axis=2) - 1).max() < 0.05
    again = extract_condition(photo(), "normal", normal_model="tiny")  # seeded: the same map again
    assert np.abs(again.astype(int) - out[0]).max() <= 1


def test_an_empty_list_only_builds_the_extractor():
    from gligen_eval.conditions.extract import extractor_model

    assert extract_conditions([], "hed", hed_weights="tiny") == []
    hits = extractor_model.cache_info().hits
    extract_condition(photo(), "hed", hed_weights="tiny")
    assert extractor_model.cache_info().hits == hits + 1  # built once, reused
    with pytest.raises(MissingWeightsError):
        extract_conditions([], "hed")


def test_large_sem_maps_are_labelled_at_a_bounded_size(monkeypatch):
    img = photo(60, 90)
    full = extract_condition(img, "sem", sem_model="tiny")
    monkeypatch.setattr(estimators, "SEM_WORK_SIDE", 30)
    small = extract_condition(img, "sem", sem_model="tiny")
    assert small.shape == full.shape == (60, 90) and set(np.unique(small)) <= set(range(1, 151))
    assert np.mean(small == full) > 0.5  # the same segmentation, coarser
