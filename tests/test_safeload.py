"""No weight file can run code: a crafted pickle at every entry point is refused before it runs.

Each crafted file holds an object whose unpickling writes a marker file (what a malicious
checkpoint would do instead). :func:`test_the_crafted_files_are_live` shows that an unrestricted
``torch.load`` does run it, so "no marker" below means the loader refused, not a dud payload.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gligen_eval.cli import main
from gligen_eval.errors import InputError
from gligen_eval.generation import checkpoints as C

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``exec`` of code that writes ``marker`` (only builtins: live in any process)."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('payload ran')"

    def __reduce__(self):
        return (exec, (self.code,))


class ShellPayload:
    """The payload as users would write it: ``os.system('touch PWNED')``."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def craft(path: Path, marker: Path, *, legacy: bool = False, key: str = "model") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: Payload(marker), "w": torch.zeros(2)}, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(autouse=True)
def _fresh_logging(monkeypatch):
    """``main`` configures logging once per process; give each test's captured stderr its own handler."""
    import logging

    for name in (None, "diffusers", "transformers"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def _one_line(text: str) -> str:
    """The command's error line: exactly one, and no traceback anywhere (library log lines may precede it)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("gligen-eval") and ": error: " in ln]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


def _refusal(err: BaseException, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg and str(path.name) in msg and "refusing to unpickle" in msg, msg
    assert "weights_only=False" not in msg and "set to `False`" not in msg and "`weights_only`" not in msg
    return msg


def test_the_crafted_files_are_live(tmp_path, marker):
    for legacy in (False, True):
        path = craft(tmp_path / f"live{legacy}.pt", marker, legacy=legacy)
        torch.load(path, weights_only=False)  # what ultralytics and torch-fidelity would do with it
        assert marker.read_text() == "payload ran"
        marker.unlink()


# --------------------------------------------------------------------------------------------
# the loader itself


@pytest.mark.parametrize("legacy", [False, True])
def test_generator_checkpoints_refuse_a_crafted_pickle(tmp_path, marker, legacy):
    from gligen_eval import safeload

    path = craft(tmp_path / "evil.bin", marker, legacy=legacy)
    with pytest.raises(InputError) as e:
        C.read_checkpoint(path)
    _refusal(e.value, path)
    assert "builtins.exec" in str(e.value) or "exec" in str(e.value)
    unet_dir = tmp_path / "folder" / "unet"  # the same file as a diffusers UNet folder's weights
    craft(unet_dir / "diffusion_pytorch_model.bin", marker, legacy=legacy)
    with pytest.raises(InputError):
        C.read_checkpoint(unet_dir.parent)
    with pytest.raises(InputError):
        safeload.read_state_dict(path)
    with pytest.raises(InputError):
        safeload.check_pickle(path)
    assert not marker.exists()


def test_refusal_never_quotes_torchs_advice(tmp_path):
    """A bare pickle of a builtin: torch's own error starts with its weights_only=False advice."""
    from gligen_eval import safeload

    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"a": eval}, protocol=2))
    framed = tmp_path / "framed.pt"  # protocol 5: an instruction the restricted unpickler does not know
    framed.write_bytes(pickle.dumps({"a": eval}, protocol=5))
    for path in (raw, framed):
        with pytest.raises(pickle.UnpicklingError, match="weights_only"):  # torch's wording, for contrast
            torch.load(path, weights_only=True)
    for read in (C.read_checkpoint, safeload.read_state_dict, safeload.read_ultralytics_checkpoint):
        with pytest.raises(InputError) as e:
            read(raw)
        assert "refusing to unpickle eval" in _refusal(e.value, raw).replace("builtins.", "")
        with pytest.raises(InputError) as e:
            read(framed)
        assert "refusing to unpickle the file (" in _refusal(e.value, framed)


def test_unreadable_files_are_one_line_errors(tmp_path):
    from gligen_eval import safeload

    good = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(64)}, str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:40])
    pt = tmp_path / "cut.pt"
    torch.save({"a": torch.zeros(64)}, pt)
    pt.write_bytes(pt.read_bytes()[:300])
    for fn, p in ((C.read_checkpoint, cut), (safeload.safetensors_metadata, cut), (safeload.safetensors_keys, cut),
                  (C.read_checkpoint, pt)):  # fmt: skip
        with pytest.raises(InputError) as e:
            fn(p)
        assert "\n" not in str(e.value) and p.name in str(e.value) and "truncated" in str(e.value)


def test_hand_over_refuses_any_other_unpickling(tmp_path):
    from gligen_eval import safeload

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"x": torch.ones(1)}, a)
    torch.save({"x": torch.ones(1)}, b)
    obj = {"already": "read"}
    env_before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    with safeload.torch_load_returns(a, obj) as calls:
        assert torch.load(str(a), weights_only=False) is obj
        with pytest.raises(InputError, match="refusing to unpickle"):
            torch.load(str(b), weights_only=False)
        assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
    assert calls == [str(a)]
    assert torch.load(b)["x"].item() == 1.0  # restored afterwards
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == env_before


# --------------------------------------------------------------------------------------------
# ultralytics checkpoints


@pytest.fixture(scope="module")
def yolo_checkpoints(tmp_path_factory):
    """Real ultralytics checkpoints, built offline (random weights) and saved the way ultralytics saves them."""
    from gligen_eval.scoring.detectors import _import_yolo

    YOLO = _import_yolo()
    root = tmp_path_factory.mktemp("yolo")
    out = {}
    for name in ("yolov8n", "yolov8n-pose"):
        torch.manual_seed(0)
        model = YOLO(f"{name}.yaml", verbose=False)
        model.save(str(root / f"{name}.pt"))
        out[name] = (root / f"{name}.pt", model)
    return out


def test_ultralytics_checkpoint_is_read_with_the_allow_list_only(yolo_checkpoints):
    from gligen_eval import safeload

    path, built = yolo_checkpoints["yolov8n"]
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert any(n.startswith("ultralytics.nn.") for n in names) and any(n.startswith("torch.nn.modules.") for n in names)
    ckpt = safeload.read_ultralytics_checkpoint(path)
    model = ckpt["model"]
    assert type(model) is type(built.model)  # the real class, not the stand-in the unpickler used
    assert all(not isinstance(m, safeload._Instantiable) for m in model.modules())
    saved, loaded = built.model.state_dict(), model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k].half(), loaded[k]) for k in saved)  # YOLO.save stores fp16


@pytest.mark.slow
def test_yolo_detectors_load_real_checkpoints_without_a_second_unpickling(yolo_checkpoints, monkeypatch):
    from PIL import Image

    from gligen_eval.scoring.detectors import YoloDetector, YoloPoseDetector

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    det = YoloDetector(str(yolo_checkpoints["yolov8n"][0]), conf=0.0, imgsz=64, device="cpu")
    pose = YoloPoseDetector(str(yolo_checkpoints["yolov8n-pose"][0]), conf=0.0, imgsz=64, device="cpu")
    assert len(loads) == 2  # one restricted read per file; ultralytics was handed the result
    img = Image.new("RGB", (64, 64), (120, 30, 200))
    assert det.detect([img]) and len(det.names) == 80
    out = pose.detect([img])[0]
    assert out and len(out[0].keypoints) == 17


@pytest.mark.parametrize("detector", ["YoloDetector", "YoloPoseDetector"])
def test_yolo_detectors_refuse_crafted_checkpoints(tmp_path, marker, detector):
    from gligen_eval.scoring import detectors

    cls = getattr(detectors, detector)
    for legacy in (False, True):
        path = craft(tmp_path / f"evil{legacy}.pt", marker, legacy=legacy)
        with pytest.raises(InputError) as e:
            cls(str(path), device="cpu")
        assert "ultralytics" in _refusal(e.value, path)
    assert not marker.exists()


class ModelBuildingPayload:
    """A call of an allowed ultralytics class: ``DetectionModel(cfg)`` would evaluate the
    model definition's ``activation`` string, i.e. run code. Classes may only be rebuilt."""

    def __init__(self, marker: Path):
        self.cfg = {"nc": 1, "activation": f"open({str(marker)!r}, 'w').write('payload ran')",
                    "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Detect", ["nc"]]]}  # fmt: skip

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        return (DetectionModel, (self.cfg,))


def test_allowed_classes_are_never_called(tmp_path, marker):
    from gligen_eval.scoring.detectors import YoloDetector, _import_yolo

    _import_yolo()
    path = tmp_path / "builder.pt"
    torch.save({"model": ModelBuildingPayload(marker)}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == ["ultralytics.nn.tasks.DetectionModel"]
    with pytest.raises(InputError) as e:
        YoloDetector(str(path), device="cpu")
    assert "a call to ultralytics.nn.tasks.DetectionModel" in _refusal(e.value, path)
    assert not marker.exists()


def test_ultralytics_checkpoint_without_a_model_or_truncated_is_refused(tmp_path, yolo_checkpoints):
    from gligen_eval.scoring.detectors import YoloDetector

    path = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, path)
    with pytest.raises(InputError, match=r"plain\.pt: not an ultralytics checkpoint"):
        YoloDetector(str(path), device="cpu")
    cut = tmp_path / "cut.pt"
    data = yolo_checkpoints["yolov8n"][0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.pt: not a readable PyTorch checkpoint .*truncated"):
        YoloDetector(str(cut), device="cpu")


# --------------------------------------------------------------------------------------------
# the other entry points


def test_adapters_refuse_crafted_files(tmp_path, marker):
    from gligen_eval.generation.adapters import describe_checkpoint, load_adapter

    disguised = craft(tmp_path / "evil.pt", marker)
    renamed = tmp_path / "evil.safetensors"
    renamed.write_bytes(disguised.read_bytes())
    for path in (disguised, renamed):
        with pytest.raises(InputError) as e:
            load_adapter(path)
        assert "\n" not in str(e.value) and path.name in str(e.value)
    with pytest.raises(InputError):
        describe_checkpoint(disguised)
    assert not marker.exists()


@pytest.mark.slow
def test_check_base_refuses_crafted_files(tmp_path, marker, capsys):
    from gligen_eval.generation.tiny import tiny_components

    base = C.save_official(tiny_components(seed=0, sample_size=32)["unet"], tmp_path / "base.bin")
    evil = craft(tmp_path / "candidate.bin", marker)
    for args in ([str(base), str(evil)], [str(evil), str(base)]):
        capsys.readouterr()
        assert main(["check-base", *args]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "candidate.bin" in line and "refusing to unpickle" in line
    assert main(["check-base", str(base), str(evil), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(evil) and "refusing to unpickle" in out["error"]
    assert not marker.exists()


def test_fid_inception_weights_refuse_crafted_files(tmp_path, marker):
    """torch-fidelity reads this file with weights_only=False; we read it first and hand it over."""
    from gligen_eval.scoring.quality import inception_extractor

    path = craft(tmp_path / "weights-inception.pth", marker)
    with pytest.raises(InputError) as e:
        inception_extractor(weights_path=path)
    _refusal(e.value, path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def crafted_hf_folders(tmp_path_factory):
    """Tiny CLIP and OWLv2 folders whose weights are a crafted pytorch_model.bin."""
    from gligen_eval.scoring.clip import tiny_clip
    from gligen_eval.scoring.openvocab import tiny_owlv2

    root = tmp_path_factory.mktemp("hf")
    marker = root / "PAYLOAD_RAN"
    folders = {}
    for name, build in (("clip", tiny_clip), ("owlv2", tiny_owlv2)):
        model, processor = build()
        folder = root / name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        for f in folder.glob("*.safetensors"):
            f.unlink()
        craft(folder / "pytorch_model.bin", marker)
        folders[name] = folder
    return folders, marker


def test_transformers_folders_refuse_crafted_weights(crafted_hf_folders):
    from transformers import CLIPModel

    from gligen_eval.scoring.clip import ClipScorer
    from gligen_eval.scoring.openvocab import OwlDetector

    folders, marker = crafted_hf_folders
    with pytest.raises(InputError) as e:
        ClipScorer.from_pretrained(str(folders["clip"]), device="cpu")
    _refusal(e.value, folders["clip"] / "pytorch_model.bin")
    with pytest.raises(InputError) as e:
        OwlDetector(str(folders["owlv2"]), device="cpu")
    _refusal(e.value, folders["owlv2"] / "pytorch_model.bin")
    # what we rely on besides our own check: transformers itself reads .bin with weights_only=True
    with pytest.raises(pickle.UnpicklingError):
        CLIPModel.from_pretrained(str(folders["clip"]), local_files_only=True)
    assert not marker.exists()


def test_condition_extractor_folders_refuse_crafted_weights(crafted_hf_folders, tmp_path):
    """Depth/sem/normal extractors from a local folder, a diffusers pipeline's parts one level down included."""
    import shutil

    import numpy as np

    from gligen_eval.conditions import extract_conditions

    folders, marker = crafted_hf_folders
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError) as e:
        extract_conditions([image], "depth", depth_model=str(folders["clip"]))
    _refusal(e.value, folders["clip"] / "pytorch_model.bin")
    pipeline = tmp_path / "normals-pipeline"
    shutil.copytree(folders["clip"], pipeline / "unet")
    with pytest.raises(InputError) as e:
        extract_conditions([image], "normal", normal_model=str(pipeline))
    _refusal(e.value, pipeline / "unet" / "pytorch_model.bin")
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    from gligen_eval.generation.loading import save_components
    from gligen_eval.generation.tiny import tiny_components

    return save_components(tiny_components(seed=0, sample_size=32), tmp_path_factory.mktemp("sd") / "tiny-sd")


def test_run_refuses_a_crafted_generator_unet(tmp_path, marker, tiny_sd_folder, capsys):
    """diffusers reads the folder's .bin itself (weights_only=True); the official-checkpoint path is ours."""
    import shutil

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_folder, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    craft(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    official = craft(tmp_path / "official.bin", marker)
    for model in ([f"model.name={folder}"], [f"model.name={official}", "model.base=tiny"]):
        capsys.readouterr()
        code = main(["run", "--out", str(tmp_path / "run"), "--no-progress", "--set", "layouts.limit=2",
                     *(a for m in model for a in ("--set", m))])  # fmt: skip
        assert code == 2
        line = _one_line(capsys.readouterr().err)
        assert "refusing to unpickle" in line and ("official.bin" in line or "diffusion_pytorch_model.bin" in line)
    assert not marker.exists()
    assert not (tmp_path / "run" / "images").exists() or not any((tmp_path / "run" / "images").iterdir())


@pytest.mark.parametrize("key", ["detector.weights", "pose.weights"])
def test_run_refuses_crafted_detector_weights(tmp_path, marker, key, capsys):
    evil = craft(tmp_path / "evil.pt", marker)
    args = ["run", "--out", str(tmp_path / "run"), "--no-progress", "--set", "layouts.limit=2", "--set", f"{key}={evil}"]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert "evil.pt" in line and "refusing to unpickle" in line
    assert main([*args, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(evil) and "refusing to unpickle" in out["error"]
    assert not marker.exists()


@pytest.mark.slow
def test_cli_run_with_the_shell_payload_does_not_run_it(tmp_path):
    """The command from the bug report, in a fresh process: no PWNED file, one line, exit 2."""
    torch.save({"model": ShellPayload()}, tmp_path / "evil.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for key in ("detector.weights", "pose.weights"):
        proc = subprocess.run(
            [sys.executable, "-m", "gligen_eval", "run", "--out", str(tmp_path / "run"), "--set", "layouts.limit=2",
             "--set", f"{key}=evil.pt", "--no-progress"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "evil.pt" in _one_line(proc.stderr)
        assert not (tmp_path / "PWNED").exists()


def test_yolo_model_definitions_that_would_run_code_are_refused(tmp_path, marker):
    """A ``.yaml`` model definition is code to ultralytics: its activation is evaluated, its layer
    names are looked up among module globals and called."""
    from gligen_eval import safeload
    from gligen_eval.scoring.detectors import YoloDetector

    evil_pt = craft(tmp_path / "evil.pt", marker)
    head = "head:\n  - [[0], 1, Detect, [nc]]\n"
    activation = tmp_path / "activation.yaml"
    activation.write_text(f"nc: 80\nactivation: open({str(marker)!r}, 'w').write('x') or nn.SiLU()\n"
                          f"backbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n{head}")  # fmt: skip
    caller = tmp_path / "caller.yaml"
    caller.write_text(f"nc: 80\nbackbone:\n  - [-1, 1, torch_load, [{str(evil_pt)!r}]]\n{head}")
    for path, needle in ((activation, "refusing the activation"), (caller, "refusing backbone[0] module 'torch_load'")):
        with pytest.raises(InputError) as e:
            YoloDetector(str(path), device="cpu")
        assert needle in str(e.value) and path.name in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    ok = {"activation": "torch.nn.LeakyReLU(0.1)", "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "nn.Upsample", [None, 2]]],
          "head": [[[0], 1, "Detect", ["nc"]]]}  # fmt: skip
    safeload.check_ultralytics_definition(ok, "ok.yaml")
    for act in ("nn.SiLU()", "nn.ReLU(inplace=True)"):
        safeload.check_ultralytics_definition({**ok, "activation": act}, "ok.yaml")
    for act in ("nn.SiLU", "nn.Sequential(*[])", "os.system('x')", "nn.SiLU(print('x'))", "nn.functional.relu()"):
        with pytest.raises(InputError):
            safeload.check_ultralytics_definition({**ok, "activation": act}, "bad.yaml")
