"""The CLI in a subprocess, and a run killed part-way (``kill -9``) for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence


def cli(*args: str) -> list[str]:
    """The command line of ``gligen-eval ARGS`` with this interpreter."""
    return [sys.executable, "-m", "gligen_eval", *args]


def kill_run_after_rows(out: Path, args: Sequence[str], env: Mapping[str, str], *, rows: int = 2,
                        timeout: float = 120.0) -> list[str]:  # fmt: skip
    """Start ``gligen-eval run --out OUT ARGS``, ``SIGKILL`` it once ``samples.jsonl`` holds ``rows``
    rows, and return the rows it left. Fails when the run ends on its own before that."""
    proc = subprocess.Popen(cli("run", "--out", str(out), *args), env=dict(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    samples = out / "samples.jsonl"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if samples.exists() and samples.read_text().count("\n") >= rows:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return [line for line in samples.read_text().splitlines() if line.strip()]
