"""Adapters in runs (model.adapter) and the frozen-base check on the command line."""

from __future__ import annotations

import json

import torch

from gligen_eval.cli import main
from gligen_eval.generation.adapters import save_adapter
from gligen_eval.generation.checkpoints import save_official
from gligen_eval.generation.loading import load_components
from gligen_eval.generation.tiny import tiny_components


def test_adapter_is_plugged_into_the_loaded_unet(tmp_path):
    donor = tiny_components(seed=0, sample_size=32)["unet"]
    path = save_adapter(donor, tmp_path / "adapter.safetensors")
    comps = load_components("tiny", tiny_seed=1, sample_size=32, adapter=str(path))
    got = comps["unet"].state_dict()
    other = tiny_components(seed=1, sample_size=32)["unet"].state_dict()
    fuser = next(k for k in got if ".fuser." in k)
    base = "conv_in.weight"
    assert torch.equal(got[fuser], donor.state_dict()[fuser])  # adapter weights from the file
    assert torch.equal(got[base], other[base])  # frozen base from the loaded model
    assert "adapter" in comps.sources["unet"]


def test_check_base_command(tmp_path, capsys):
    comps = tiny_components(seed=0, sample_size=32)
    base = save_official(comps["unet"], tmp_path / "base.bin")
    same = save_official(comps["unet"], tmp_path / "same.bin")
    assert main(["check-base", str(base), str(same)]) == 0
    with torch.no_grad():
        comps["unet"].conv_in.weight[0, 0, 0, 0] += 1e-3  # one changed base weight
    changed = save_official(comps["unet"], tmp_path / "changed.bin")
    capsys.readouterr()
    assert main(["check-base", str(base), str(changed), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "conv_in.weight" in json.dumps(report)
    assert main(["check-base", str(tmp_path / "nope"), str(same)]) == 2
