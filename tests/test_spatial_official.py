"""The reference forward against the official UNet: whole-model fixtures of text+box, canny and sem.

Each fixture holds an official ``model`` dict (tiny widths, SD-1.4 topology, random weights, gates
open), its ``config_dict``, the inputs and the official outputs at grounding scale 1, 0.5 and 0 (for
spatial models: scale 0 with the base model's 4-channel first conv swapped in). The checkpoint goes
through the same loader as a real file (``load_official_unet``) and the same forward as the sampler.
"""

from __future__ import annotations

import json

import pytest
import torch

from gligen_eval.generation import checkpoints as C

FIXTURES = ["unet_text_box_A", "unet_canny_A", "unet_sem_A"]


def _fixture(official_dir, name):
    from safetensors.torch import load_file

    base = official_dir / "fixtures" / name
    meta = json.loads(base.with_suffix(".json").read_text())
    t = load_file(str(base.with_suffix(".safetensors")))
    state = {k[len("state."):]: v for k, v in t.items() if k.startswith("state.")}
    for key, shape in meta.get("zero_state_keys", {}).items():  # stored as absent: rebuild as zeros
        state[key] = torch.zeros(shape)
    grounding = {k[len("input.grounding."):]: v for k, v in t.items() if k.startswith("input.grounding.")}
    if "input.sem_labels" in t:  # the sem one-hot is stored as its label map
        labels = t["input.sem_labels"].long()
        grounding["sem"] = torch.zeros(labels.shape[0], 152, *labels.shape[1:]).scatter_(1, labels[:, None], 1.0)
    inputs = {"x": t["input.x"], "timesteps": t["input.timesteps"], "context": t["input.context"]}
    inputs["grounding_input"] = grounding
    spatial = "input.sd_first_conv.weight" in t
    if spatial:  # the downsampler's input is the position net's map, stored once
        inputs["grounding_extra_input"] = next(v for k, v in grounding.items() if k != "mask")
    outputs = {k[len("output."):]: v for k, v in t.items() if k.startswith("output.")}
    conv = (t["input.sd_first_conv.weight"], t["input.sd_first_conv.bias"]) if spatial else None
    return meta, state, inputs, outputs, conv


@pytest.fixture(scope="module", params=FIXTURES)
def loaded(request, official_dir, tmp_path_factory):
    meta, state, inputs, outputs, conv = _fixture(official_dir, request.param)
    path = tmp_path_factory.mktemp("ckpt") / f"{request.param}.bin"
    torch.save({"model": state, "config_dict": meta["config_dict"]}, path)
    unet, _, info = C.load_official_unet(path)
    return request.param, unet, info, inputs, outputs, conv


def _run(unet, inputs, scale, conv=None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return C.official_forward(unet, inputs, scale=scale, base_conv_in=conv)
    finally:
        torch.set_num_threads(threads)


def test_fixture_outputs_at_every_stored_scale(loaded, record_property):
    name, unet, info, inputs, outputs, conv = loaded
    expected_modality = {"unet_text_box_A": "text-box", "unet_canny_A": "canny", "unet_sem_A": "sem"}[name]
    assert info.modality == expected_modality
    checked = 0
    for key, want in outputs.items():
        scale = float(key.split("scale")[1].split("_")[0])
        got = _run(unet, inputs, scale, conv if key.endswith("sd_first_conv") else None)
        err = float((got - want).abs().max())
        record_property(f"{name}/{key}/max_abs_err", err)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=f"{name} {key}: max abs error {err:.2e}")
        checked += 1
    assert checked == 3


@pytest.mark.slow
def test_the_fixtures_are_sensitive(loaded):
    """The checks above can fail: a moved map, a wrong scale or the trained conv at α = 0 all differ."""
    name, unet, _, inputs, outputs, conv = loaded
    assert (_run(unet, inputs, 0.5) - outputs["eps_scale1"]).abs().max() > 1e-3
    if conv is None:
        return
    shifted = {k: (v.roll(8, dims=-1) if v.dim() == 4 else v) for k, v in inputs["grounding_input"].items()}
    moved = {**inputs, "grounding_input": shifted}
    moved["grounding_extra_input"] = next(v for k, v in moved["grounding_input"].items() if k != "mask")
    assert (_run(unet, moved, 1.0) - outputs["eps_scale1"]).abs().max() > 1e-3
    assert (_run(unet, inputs, 0.0) - outputs["eps_scale0_sd_first_conv"]).abs().max() > 1e-3  # no swap
    # the unconditional sample (mask 0) of each fixture still sees the map through the downsampler
    assert float(inputs["grounding_input"]["mask"].min()) == 0.0


@pytest.mark.slow
def test_spatial_round_trip_through_save_official(loaded, tmp_path):
    name, unet, info, inputs, outputs, conv = loaded
    if conv is None:
        return  # text+box official round trips are tested in test_checkpoints
    path = C.save_official(unet, tmp_path / "again.bin")
    again, _, info2 = C.load_official_unet(path)
    assert info2.modality == info.modality
    assert C.spatial_settings(again) == C.spatial_settings(unet)
    torch.testing.assert_close(_run(again, inputs, 1.0), outputs["eps_scale1"], atol=1e-5, rtol=1e-4)
