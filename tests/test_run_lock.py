"""One writer per run directory: the lock file RUN/.lock (gligen_eval.runlock)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gligen_eval.cli import main
from gligen_eval.config import load_config
from gligen_eval.errors import RunLockedError
from gligen_eval.runlock import LOCK_NAME, WAIT_ENV, RunLock

SMALL = ["--set", "layouts.limit=2", "--set", "sampler.steps=2", "--no-progress"]


def _config_hash(out: Path, *overrides: str) -> str:
    from gligen_eval.runner import config_hash_of

    sets = [s for s in overrides if s != "--set" and "=" in s]
    return config_hash_of(load_config(None, [*sets, f"out={out}"]))


def _unfinished_run(out: Path) -> None:
    """A manifest without metrics: the runner stops with "--resume" right after taking the lock."""
    out.mkdir(parents=True)
    cfg = load_config(None, [f"out={out}"])
    (out / "manifest.json").write_text(json.dumps({"config": cfg.to_dict()}))


HOLDER = textwrap.dedent(
    """
    import sys, time
    from gligen_eval.runlock import RunLock
    lock = RunLock(sys.argv[1], sys.argv[2]).acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    lock.release()
    """
)


def _hold(out: Path, config_hash: str, seconds: float) -> subprocess.Popen:
    """Another process holding ``out``'s lock for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), config_hash, str(seconds)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_writer_with_another_config_exits_2_naming_dir_and_owner(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _hold(out, "some-other-config", 30)
    try:
        t = time.monotonic()
        assert main(["run", "--out", str(out), *SMALL]) == 2
        assert time.monotonic() - t < 10  # at once, before any model is built
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(out) in err and f"pid {holder.pid} on {socket.gethostname()}" in err and "another config" in err
    assert not (out / "manifest.json").exists()


def test_same_config_waits_for_the_owner_then_continues(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    _unfinished_run(out)
    holder = _hold(out, _config_hash(out, *SMALL), 1.5)
    t = time.monotonic()
    assert main(["run", "--out", str(out), *SMALL]) == 2  # continues after the owner: its unfinished run needs --resume
    waited = time.monotonic() - t
    holder.wait()
    err = capsys.readouterr().err + caplog.text
    assert "same config; waiting" in err and "--resume" in err
    assert waited >= 0.5
    assert not (out / LOCK_NAME).exists()  # released on the error too


def test_same_config_wait_is_bounded(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv(WAIT_ENV, "0.5")
    holder = _hold(out, _config_hash(out, *SMALL), 30)
    try:
        assert main(["run", "--out", str(out), *SMALL]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "still being written" in err and "after waiting 0.5 s" in err and WAIT_ENV in err


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    _unfinished_run(out)
    pid = _dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "config_hash": "old"}))
    assert main(["run", "--out", str(out), *SMALL]) == 2  # took the lock, then: unfinished, needs --resume
    err = capsys.readouterr().err + caplog.text
    assert f"taking over the lock of pid {pid}" in err and "no longer running" in err and "--resume" in err
    assert not (out / LOCK_NAME).exists()


def test_lock_from_another_host_counts_as_held(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "config_hash": "x"}))
    assert main(["run", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "pid 1 on elsewhere.example" in err and f"delete {out / LOCK_NAME}" in err


def test_lock_semantics_in_one_process(tmp_path):
    a = RunLock(tmp_path, "cfg-a", wait=0)
    with a:
        assert a.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match="another config"):
            RunLock(tmp_path, "cfg-b").acquire()
        with pytest.raises(RunLockedError, match="after waiting 0 s"):
            RunLock(tmp_path, "cfg-a", wait=0).acquire()
        assert a.acquire() is a  # taking a lock this object holds is a no-op
    assert not a.held and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path, "cfg-b", wait=0):  # free again
        pass


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    from gligen_eval import runner

    cfg = load_config(None, [f"out={tmp_path / 'run'}"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with runner.writer_lock(cfg):
        assert not (tmp_path / "run" / LOCK_NAME).exists()
    monkeypatch.setenv("RANK", "0")
    with runner.writer_lock(cfg):
        assert (tmp_path / "run" / LOCK_NAME).is_file()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gligen_eval", *args]


@pytest.mark.slow
def test_two_real_writers_one_run_directory(tmp_path):
    """Real `gligen-eval run` processes on one --out: another config exits 2 while the first runs, the same
    config waits and then reruns what the first wrote; the directory holds the first config's run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    first = subprocess.Popen(_cli("run", "--out", str(out), *SMALL), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not ((out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().strip()):
        assert first.poll() is None and time.time() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    other = subprocess.run(_cli("run", "--out", str(out), *SMALL, "--set", "scoring.success_iou=0.3"), env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.poll() is None, "the first run ended before the second one tried"
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and str(out) in other.stderr and f"pid {first.pid}" in other.stderr
    same = subprocess.run(_cli("run", "--out", str(out), *SMALL, "--json"), env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert same.returncode == 0, same.stderr
    assert "waiting for it to finish" in same.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(same.stdout)["metrics"] == metrics
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["scoring"]["success_iou"] == 0.5
    assert not (out / LOCK_NAME).exists()
