"""Images written beside generation: same bytes, rows and metrics as the sequential writer; writer
errors are one line and leave the run resumable; a kill loses at most the queued images."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from run_cli import cli, kill_run_after_rows
from gligen_eval import store
from gligen_eval.cli import main
from gligen_eval.errors import RunDirError
from gligen_eval.records import SampleRecord
from gligen_eval.writer import BatchWriter, PendingImage

SMALL = ["--set", "layouts.limit=4", "--set", "sampler.steps=2", "--set", "sampler.height=64",
         "--set", "sampler.width=64", "--set", "sampler.batch_size=2", "--no-progress"]  # fmt: skip
SEQUENTIAL = ["--set", "sampler.write_overlap=false"]


def _run_files(run: Path) -> tuple[dict[str, bytes], str, dict]:
    images = {p.name: p.read_bytes() for p in (run / "images").iterdir() if p.suffix == ".png"}
    return images, (run / "samples.jsonl").read_text(), json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("writer") / "sequential"
    assert main(["run", "--out", str(out), *SMALL, *SEQUENTIAL]) == 0
    return out


def test_overlapped_run_equals_sequential_run(sequential_run, tmp_path):
    out = tmp_path / "overlapped"
    assert main(["run", "--out", str(out), *SMALL]) == 0
    seq_images, seq_rows, seq_metrics = _run_files(sequential_run)
    images, rows, metrics = _run_files(out)
    assert len(images) == 4 and images == seq_images
    assert rows == seq_rows  # same rows, same order
    assert metrics == seq_metrics
    # how images are written is not a generation setting: the manifests agree on what made the images
    a, b = (json.loads((r / "manifest.json").read_text()) for r in (out, sequential_run))
    assert a["generation_hash"] == b["generation_hash"] and a["config_hash"] != b["config_hash"]


def test_writer_failure_is_one_line_and_run_resumes(sequential_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "full-disk"
    real_write = store.atomic_write_bytes
    written = []

    def failing_write(path, data):
        if Path(path).suffix == ".png":
            if len(written) == 2:  # the first batch lands, the second fails
                raise store.write_error(path, OSError(errno.ENOSPC, "No space left on device"))
            written.append(path)
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", failing_write)
    t0 = time.monotonic()
    assert main(["run", "--out", str(out), *SMALL]) == 2
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "cannot write (No space left on device)" in err and ".png" in err and "--resume" in err
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2  # only the batch whose images were all written has rows
    assert all(store.is_complete_png(out / r["image"]) for r in rows)
    assert not (out / "metrics.json").exists()
    assert not [t for t in threading.enumerate() if t.name == "gligen-eval-writer"]  # no writer left behind

    monkeypatch.setattr(store, "atomic_write_bytes", real_write)
    assert main(["run", "--out", str(out), "--resume", *SMALL]) == 0
    assert _run_files(out) == _run_files(sequential_run)


def _pending(tmp_path: Path, names: list[str], calls: list[str]) -> list[PendingImage]:
    def record(name):
        def build(img):
            calls.append(name)
            return SampleRecord(sample_key=name, layout_id=name, seed=0, image=f"images/{name}.png",
                                width=img.width, height=img.height, layout_hash="l", settings_hash="s")  # fmt: skip

        return build

    img = Image.new("RGB", (8, 8), (10, 20, 30))
    return [PendingImage(tmp_path / "images" / f"{n}.png", img, record(n)) for n in names]


@pytest.mark.parametrize("overlap", [True, False])
def test_batch_writer_keeps_order_and_appends_rows_after_files(tmp_path, overlap):
    calls: list[str] = []
    out = tmp_path / "samples.jsonl"
    with BatchWriter(out, overlap=overlap, max_pending=1) as w:
        for i in range(5):
            w.submit(_pending(tmp_path, [f"b{i}a", f"b{i}b"], calls))
        records = w.close()
    names = [f"b{i}{x}" for i in range(5) for x in "ab"]
    assert calls == names and list(records) == names
    assert [json.loads(x)["sample_key"] for x in out.read_text().splitlines()] == names
    assert all(store.is_complete_png(tmp_path / "images" / f"{n}.png") for n in names)


def test_batch_writer_error_reaches_the_caller_and_drops_the_queue(tmp_path, monkeypatch):
    real_write = store.atomic_write_bytes
    release = threading.Event()

    def write(path, data):
        if Path(path).name == "b1.png":
            release.wait(10)
            raise store.write_error(path, OSError(errno.EACCES, "Permission denied"))
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", write)
    out = tmp_path / "samples.jsonl"
    w = BatchWriter(out, overlap=True, max_pending=1)
    calls: list[str] = []
    w.submit(_pending(tmp_path, ["b0"], calls))
    w.submit(_pending(tmp_path, ["b1"], calls))
    w.submit(_pending(tmp_path, ["b2"], calls))  # queued behind the failing batch
    release.set()
    with pytest.raises(RunDirError, match="Permission denied"):
        for i in range(3, 50):  # every submit returns (the worker drops what it cannot write)
            w.submit(_pending(tmp_path, [f"b{i}"], calls))
    with pytest.raises(RunDirError):
        w.close()
    assert [json.loads(x)["sample_key"] for x in out.read_text().splitlines()] == ["b0"]
    assert not (tmp_path / "images" / "b2.png").exists()


def test_exception_in_the_caller_still_writes_the_queued_batches(tmp_path):
    calls: list[str] = []
    out = tmp_path / "samples.jsonl"
    with pytest.raises(ValueError):
        with BatchWriter(out, overlap=True, max_pending=2) as w:
            w.submit(_pending(tmp_path, ["a"], calls))
            w.submit(_pending(tmp_path, ["b"], calls))
            raise ValueError("generation failed")
    assert [json.loads(x)["sample_key"] for x in out.read_text().splitlines()] == ["a", "b"]


@pytest.mark.slow
def test_kill_during_overlapped_generation_then_resume(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--set", "layouts.limit=8", "--set", "sampler.steps=4", "--set", "sampler.height=64",
            "--set", "sampler.width=64", "--set", "sampler.batch_size=2", "--no-progress"]  # fmt: skip
    full = tmp_path / "full"
    subprocess.run(cli("run", "--out", str(full), *args, *SEQUENTIAL), check=True, env=env, capture_output=True)
    cut = tmp_path / "cut"
    rows = [json.loads(x) for x in kill_run_after_rows(cut, args, env)]
    assert 2 <= len(rows) < 8 and not (cut / "metrics.json").exists()
    assert all(store.is_complete_png(cut / r["image"]) for r in rows)  # a row never names a missing image
    subprocess.run(cli("run", "--out", str(cut), "--resume", *args), check=True, env=env, capture_output=True)
    assert _run_files(cut) == _run_files(full)
