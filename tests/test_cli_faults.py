"""Faults end in one line: OS errors on outputs, unreadable weights, ``--json`` on failure, broken pipes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gligen_eval import store
from gligen_eval.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--no-progress", "--set", "layouts.limit=2", "--set", "sampler.steps=2", "--set", "sampler.batch_size=1"]


@pytest.fixture(autouse=True)
def _fresh_logging(monkeypatch):
    """``main`` configures logging once per process; give each test's captured stderr its own handler."""
    import logging

    for name in (None, "diffusers", "transformers"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])


def _error_line(text: str) -> str:
    """The command's error line: exactly one, and no traceback anywhere."""
    lines = [ln for ln in text.splitlines() if ln.startswith("gligen-eval") and ": error: " in ln]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


def _json_error(out: str) -> dict:
    """stdout holds exactly one JSON object: the error and the path it names."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    obj = json.loads(lines[0])
    assert {"error", "path"} <= set(obj) and obj["error"]  # compare adds its own (empty) fields
    return obj


@pytest.fixture(scope="module")
def runs(toy_runs) -> dict[str, Path]:
    return {"base": toy_runs("good"), "cand": toy_runs("drifted")}


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only folder. Root ignores file modes, so it is bind-mounted read-only (skips where not allowed)."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    mount = shutil.which("mount")
    ok = mount is not None and all(
        subprocess.run(cmd, capture_output=True).returncode == 0
        for cmd in (["mount", "--bind", str(d), str(d)], ["mount", "-o", "remount,bind,ro", str(d)])
    )
    if not ok:
        subprocess.run(["umount", str(d)], capture_output=True)
        pytest.skip("cannot bind-mount a read-only folder here (root ignores file modes)")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


# --------------------------------------------------------------------------------------------
# OS errors on the output


def test_read_only_out_is_one_line_for_run_report_and_compare(read_only_dir, runs, capsys):
    with pytest.raises(OSError):
        (read_only_dir / "probe").write_text("x")
    commands = [
        ["run", "--out", str(read_only_dir / "run"), *TINY_RUN],
        ["report", str(runs["base"]), "--out", str(read_only_dir / "report")],
        ["compare", str(runs["base"]), str(runs["cand"]), "--out", str(read_only_dir / "compare")],
    ]
    for args in commands:
        capsys.readouterr()
        assert main(args) == 2, args
        line = _error_line(capsys.readouterr().err)
        assert str(read_only_dir) in line and "read-only" in line.lower(), line
    capsys.readouterr()
    assert main(["compare", str(runs["base"]), str(runs["cand"]), "--out", str(read_only_dir / "c"), "--json"]) == 2
    assert str(read_only_dir) in _json_error(capsys.readouterr().out)["path"]


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_write = store.atomic_write_bytes
    pngs: list[Path] = []

    def write(path, data):
        if Path(path).suffix == ".png":
            if pngs:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            pngs.append(Path(path))
        return real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", write)
    assert main(["run", "--out", str(out), *TINY_RUN]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(out / "images") in line and "space" in line.lower() and "--resume" in line
    assert not (out / "metrics.json").exists()
    first = pngs[0]
    kept = first.stat().st_mtime_ns

    monkeypatch.setattr(store, "atomic_write_bytes", real_write)  # space freed
    assert main(["run", "--out", str(out), "--resume", *TINY_RUN]) == 0
    assert json.loads((out / "metrics.json").read_text())["n_samples"] == 2
    assert first.stat().st_mtime_ns == kept  # the image written before the fault was reused


# --------------------------------------------------------------------------------------------
# unreadable weights


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    from gligen_eval.generation.loading import save_components
    from gligen_eval.generation.tiny import tiny_components

    return save_components(tiny_components(seed=0, sample_size=32), tmp_path_factory.mktemp("sd") / "tiny-sd")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_unet_in_a_diffusers_folder_is_one_line(tmp_path, tiny_sd_folder, capsys):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    _truncate(weights)
    assert main(["run", "--out", str(tmp_path / "run"), *TINY_RUN, "--set", f"model.name={folder}"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(weights) in line and "truncated" in line


def test_check_base_on_a_truncated_adapter_is_one_line(tmp_path, capsys):
    from gligen_eval.generation.adapters import save_adapter
    from gligen_eval.generation.checkpoints import save_official
    from gligen_eval.generation.tiny import tiny_components

    unet = tiny_components(seed=0, sample_size=32)["unet"]
    base = save_official(unet, tmp_path / "base.bin")
    adapter = save_adapter(unet, tmp_path / "adapter.safetensors")
    assert main(["check-base", str(base), str(adapter)]) == 0
    _truncate(adapter)
    capsys.readouterr()
    assert main(["check-base", str(base), str(adapter)]) == 2
    assert str(adapter) in _error_line(capsys.readouterr().err)
    assert main(["check-base", str(base), str(adapter), "--json"]) == 2
    assert _json_error(capsys.readouterr().out)["path"] == str(adapter)


# --------------------------------------------------------------------------------------------
# --json on failure, broken pipes


def test_json_failure_is_one_object_for_every_json_command(tmp_path, runs, capsys):
    missing = tmp_path / "missing"
    cases = [
        (["run", "--out", str(tmp_path / "r"), "--set", "sampler.steps=abc"], None),
        (["check-base", str(missing), str(missing)], str(missing)),
        (["score-detections", "--layouts", str(missing), "--detections", str(missing)], str(missing)),
        (["compare", str(runs["base"]), str(missing)], str(missing)),
    ]
    for args, path in cases:
        capsys.readouterr()
        assert main([*args, "--json"]) == 2, args
        captured = capsys.readouterr()
        obj = _json_error(captured.out)
        assert obj["path"] == path, (args, obj)
        assert obj["error"] in _error_line(captured.err)


def test_json_output_into_a_closed_pipe_exits_quietly(runs):
    from gligen_eval.cli import BROKEN_PIPE_EXIT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gligen_eval", "compare", str(runs["base"]), str(runs["cand"]), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before anything is written (`| head -c 0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == BROKEN_PIPE_EXIT, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
