"""The shared digests (files, trees, named tensors) and the one device rule."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from gligen_eval.devices import resolve_device
from gligen_eval.errors import ConfigError, GligenEvalError
from gligen_eval.hashing import file_sha256, tensors_sha256, tree_sha256


def test_file_sha256_streams_and_truncates(tmp_path, monkeypatch):
    data = bytes(range(256)) * 9000  # larger than one read
    p = tmp_path / "w.bin"
    p.write_bytes(data)
    full = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr("gligen_eval.hashing.CHUNK", 1000)
    assert file_sha256(p) == full
    assert file_sha256(p, length=16) == full[:16] and file_sha256(str(p), length=24) == full[:24]


def test_tree_sha256_covers_names_and_bytes(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    files = sorted(tmp_path.rglob("*.py"))
    plain = hashlib.sha256(b"a.pyx = 1\nsub/b.pyy = 2\n").hexdigest()
    assert tree_sha256(tmp_path, files) == plain
    assert tree_sha256(tmp_path, files, separator=b"\0") == hashlib.sha256(b"a.py\0x = 1\n\0sub/b.py\0y = 2\n\0").hexdigest()
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    assert tree_sha256(tmp_path, sorted(tmp_path.rglob("*.py"))) != plain


def test_tensors_sha256_header_order_and_device_independence():
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(0), "s": torch.tensor(2.0)}
    header = "{name}|{dtype}|{shape}\n"
    h = hashlib.sha256()
    for k in ("b", "s", "w"):
        t = state[k]
        h.update(f"{k}|{str(t.dtype)[6:]}|{list(t.shape)}\n".encode() + t.numpy().tobytes())
    assert tensors_sha256(state, header=header) == h.hexdigest()
    assert tensors_sha256(state, header=header, sort=False) != h.hexdigest()  # w, b, s order
    assert tensors_sha256(state, header=header, length=16) == h.hexdigest()[:16]
    assert tensors_sha256(state, header=header, seed="x") != h.hexdigest()
    # same bytes, other shape or dtype: another digest
    assert tensors_sha256({"w": state["w"].reshape(3, 2)}, header=header) != tensors_sha256({"w": state["w"]}, header=header)
    as_int = state["w"].view(torch.int32)
    assert tensors_sha256({"w": as_int}, header=header) != tensors_sha256({"w": state["w"]}, header=header)
    tuple_header = "{name}{torch_dtype}{shape_tuple}"
    one = hashlib.sha256(b"storch.float32()" + state["s"].numpy().tobytes()).hexdigest()
    assert tensors_sha256({"s": state["s"]}, header=tuple_header) == one
    with pytest.raises(GligenEvalError, match="meta tensor"):
        tensors_sha256({"m": torch.empty(2, device="meta")}, header=header)


def test_resolve_device_one_rule(monkeypatch):
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == "cuda" and resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_importing_devices_and_hashing_is_light():
    code = ("import sys, gligen_eval.devices, gligen_eval.hashing, gligen_eval.registry; "
            "print([m for m in ('torch', 'numpy') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
