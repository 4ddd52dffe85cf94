"""The modality table: one spec per modality, read by every place that asks which modality a model is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gligen_eval.generation import grounding as G
from gligen_eval.generation import modalities as M
from gligen_eval.generation.modalities.spatial import SpatialMapTokenizer, drawn_map


def test_every_released_checkpoint_has_one_spec():
    assert len(M.MODALITIES) == 10
    assert set(M.SPATIAL_MODALITIES) == {"hed", "canny", "depth", "normal", "sem"}
    names = {s.released_checkpoint for s in M.MODALITIES.values()}
    assert names == {f"gligen/gligen-generation-{n}" for n in
                     ("text-box", "text-image-box", "keypoint", "hed", "canny", "depth", "normal", "sem")} | {
        "gligen/gligen-inpainting-text-box", "gligen/gligen-inpainting-text-image-box"}  # fmt: skip
    for s in M.MODALITIES.values():  # every tokenizer imports and names its own modality
        assert G.grounding_class(s.name).modality == s.name
    assert M.spec("sem").in_channels == 12 and M.spec("hed").in_channels == 5 and M.spec("hed").downsampler_in is None
    assert M.forced_scale("inpaint-text-box") == 1.0 and M.forced_scale("canny") is None


def test_recognise_by_keys_channels_and_downsampler():
    conv = {"convnext_tiny_backbone.downsample_layers.0.0.weight", "pos_embedding", "null_feature", "linears.0.weight"}
    assert M.recognise(conv, in_channels=5, downsampler_in=None, official=True).name == "hed"
    assert M.recognise(conv, in_channels=12, downsampler_in=1, official=True).name == "canny"
    assert M.recognise(conv, in_channels=12, downsampler_in=3, official=True).name == "normal"
    assert M.recognise(conv | {"in_conv.weight"}, in_channels=12, downsampler_in=152, official=True).name == "sem"
    text = {"linears.0.weight", "null_positive_feature", "null_position_feature"}
    assert M.recognise(text, in_channels=9, downsampler_in=None, official=True).name == "inpaint-text-box"
    assert M.recognise({"person_embedding"}, in_channels=4, downsampler_in=None, official=False).name == "keypoint"
    assert M.compatible("depth", "canny") and not M.compatible("sem", "canny")


class ScribbleTokenizer(SpatialMapTokenizer):
    modality = "scribble"


def test_a_new_spatial_modality_is_its_spec_and_its_tokenizer(monkeypatch):
    """A made-up 'scribble' model (canny's layout, its own map name and α) runs with nothing else added."""
    from gligen_eval.config import SamplerConfig
    from gligen_eval.generation.loading import load_components
    from gligen_eval.generation.sampler import GroundedSampler
    from gligen_eval.records import GroundedObject, Layout

    spec = dataclasses.replace(
        M.spec("canny"), name="scribble", manifest="generation_scribble", released_checkpoint="someone/scribble",
        tokenizer=f"{__name__}:ScribbleTokenizer", alpha=(0.5, 0.0, 0.5), map_input="scribble", same_keys_as="canny",
    )
    monkeypatch.setitem(M.MODALITIES, "scribble", spec)
    comps = load_components("tiny", sample_size=32, modality="scribble")
    assert comps.modality == "scribble" and comps["unet"].position_net.input_name == "scribble"
    maps = lambda layout, size: drawn_map(layout, "canny", size)  # noqa: E731
    smp = GroundedSampler(comps, grounding=G.default_grounding(comps, map_provider=maps))
    assert isinstance(smp.grounding, ScribbleTokenizer) and smp.default_alpha() == [0.5, 0.0, 0.5]
    cup = [(GroundedObject(phrase="cup", box=(0.1 * i, 0.1, 0.6, 0.7)),) for i in range(2)]
    lays = [Layout(layout_id=f"x{i}", caption="a sketch", objects=objs) for i, objs in enumerate(cup)]
    out = smp.generate_arrays(lays, [0, 0], SamplerConfig(steps=2, height=32, width=32, batch_size=2))
    assert out.shape == (2, 32, 32, 3) and np.abs(out[0] - out[1]).max() > 1e-3


def test_unknown_modality_is_a_config_error():
    from gligen_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown modality 'smell'"):
        M.spec("smell")
