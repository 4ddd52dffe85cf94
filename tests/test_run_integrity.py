"""What a finished run directory survives: damaged cached images, cut record files, OS errors while
writing, and the file modes teammates need to read it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from gligen_eval import store
from gligen_eval.cli import main

SMALL = ["--set", "layouts.limit=2", "--set", "sampler.steps=2", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "run"
    old = os.umask(0o022)
    try:
        assert main(["run", "--out", str(out), *SMALL]) == 0
    finally:
        os.umask(old)
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


def _pixels(path: Path) -> np.ndarray:
    from gligen_eval.imageio import pil_open

    with pil_open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_run_files_are_readable_by_others_under_umask_022(finished):
    for p in [finished, *finished.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


@pytest.mark.parametrize("setting", ["scoring.instance_min_score=0.3",
                                     pytest.param("detector.conf=0.01", marks=pytest.mark.slow)])
def test_image_damaged_in_the_middle_is_regenerated_on_rescore_before_the_old_metrics_go(
        run_copy, monkeypatch, caplog, setting):  # fmt: skip
    image = sorted((run_copy / "images").iterdir())[0]
    good = image.read_bytes()
    damaged = bytearray(good)
    mid = len(damaged) // 2
    damaged[mid : mid + 64] = bytes(64)
    image.write_bytes(bytes(damaged))
    assert store.is_complete_png(image)  # the cheap check cannot see it

    metrics_present_when_rewritten = []
    write = store.atomic_write_bytes

    def spy(path, data):
        if Path(path) == image:
            metrics_present_when_rewritten.append((run_copy / "metrics.json").is_file())
        write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", spy)
    assert main(["run", "--out", str(run_copy), *SMALL, "--set", setting]) == 0
    assert metrics_present_when_rewritten == [True]
    assert store.png_problem(image) is None
    assert np.abs(_pixels(image) - _pixels_of(good, run_copy)).max() <= 1
    key, value = setting.split("=")
    section, name = key.split(".")
    assert json.loads((run_copy / "manifest.json").read_text())["config"][section][name] == float(value)
    assert (run_copy / "metrics.json").is_file()
    assert f"{image}: cached image damaged" in caplog.text


def _pixels_of(data: bytes, where: Path) -> np.ndarray:
    p = where / "expected.png.bin"
    p.write_bytes(data)
    try:
        return _pixels(p)
    finally:
        p.unlink()


def _cut_last_row(path: Path) -> None:
    data = path.read_bytes().rstrip(b"\n")
    last = data.rfind(b"\n") + 1
    path.write_bytes(data[: last + (len(data) - last) // 2])


def _truncation_warnings(stderr: str) -> dict[str, int]:
    """{file name: how many times} of the cut-row warnings the CLI printed."""
    out: dict[str, int] = {}
    for line in stderr.splitlines():
        if "the last line is cut short" in line:
            assert "rerun" in line
            name = Path(line.split("warning: ")[-1].split(": ")[0]).name
            out[name] = out.get(name, 0) + 1
    return out


def _cut_rows(run: Path) -> None:
    for name in (store.INSTANCES, store.SAMPLES):
        _cut_last_row(run / name)


@pytest.mark.parametrize("command", [pytest.param("report", marks=pytest.mark.slow), "compare"])
def test_readers_warn_once_per_cut_record_file(run_copy, tmp_path, command, capsys):
    _cut_rows(run_copy)
    args = ["report", str(run_copy), "--out", str(tmp_path / "rep")] if command == "report" else \
        ["compare", str(run_copy), str(run_copy), "--allow-mismatch"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    assert _truncation_warnings(capsys.readouterr().err) == {store.INSTANCES: 1, store.SAMPLES: 1}


@pytest.mark.slow
def test_a_rerun_repairs_cut_record_files(run_copy):
    """What the warning promises."""
    n_samples = len(store.RunDir(run_copy).rows(store.SAMPLES))
    _cut_rows(run_copy)
    assert main(["run", "--out", str(run_copy), *SMALL]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", store.TruncatedRowWarning)
        assert len(store.RunDir(run_copy).rows(store.SAMPLES)) == n_samples
        assert store.RunDir(run_copy).rows(store.INSTANCES)


def _fail_fsync_for(name: str, err: int, monkeypatch) -> None:
    real = os.fsync

    def fsync(fd):
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell the file being written")
def test_disk_full_while_writing_metrics_is_one_line_and_resumable(run_copy, monkeypatch, capsys):
    with monkeypatch.context() as m:
        _fail_fsync_for(store.METRICS, errno.ENOSPC, m)
        assert main(["run", "--out", str(run_copy), *SMALL, "--set", "scoring.success_iou=0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(run_copy / store.METRICS) in err and os.strerror(errno.ENOSPC) in err and "--resume" in err
    assert not list(run_copy.glob(".*.tmp"))
    assert main(["run", "--out", str(run_copy), *SMALL, "--set", "scoring.success_iou=0.3", "--resume"]) == 0
    assert store.read_json(run_copy / store.METRICS)["n_samples"] == 2


def test_unwritable_out_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "readonly"
    out.mkdir()
    real = os.open

    def deny(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    assert main(["run", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "Permission denied" in err and "writable --out" in err


@pytest.mark.slow
def test_damaged_image_is_repaired_by_its_rank_under_torchrun(tmp_path):
    """A two-process re-score decodes the cached images: the rank whose chunk holds the damaged one makes
    it again, and rank 0 scores once every rank is done."""
    import subprocess
    import sys

    args = ["--set", "layouts.limit=4", "--set", "sampler.steps=2", "--set", "sampler.batch_size=2", "--no-progress"]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *args]) == 0
    samples = store.RunDir(out).rows(store.SAMPLES)
    image = out / samples[-1]["image"]  # in the second chunk: rank 1's
    good = image.read_bytes()
    image.write_bytes(good[:100] + bytes(b ^ 0xFF for b in good[100:164]) + good[164:])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29700 + os.getpid() % 1000), "-m", "gligen_eval", "run", "--out", str(out), *args,
           "--set", "scoring.instance_min_score=0.3"]  # fmt: skip
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cached image damaged" in res.stderr
    assert store.png_problem(image) is None
    assert np.abs(_pixels(image) - _pixels_of(good, out)).max() <= 1
    assert store.read_json(out / store.METRICS)["n_samples"] == len(samples)
    assert not (out / ".lock").exists() and not list(out.glob("*.rank*.jsonl"))
