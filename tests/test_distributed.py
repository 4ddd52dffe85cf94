"""Two processes under torchrun (gloo on CPU) give exactly the metrics of one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gligen_eval.distributed import DistInfo, chunks, my_chunks


def test_chunks_partition_in_order():
    items = list(range(11))
    assert chunks(items, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    r0 = my_chunks(items, 2, DistInfo(0, 2))
    r1 = my_chunks(items, 2, DistInfo(1, 2))
    assert r0 == [[0, 1], [4, 5], [8, 9]] and r1 == [[2, 3], [6, 7], [10]]
    assert sorted(x for c in r0 + r1 for x in c) == items


def _torchrun(nproc: int, out, args, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + nproc + os.getpid() % 1000), "-m", "gligen_eval", "run", "--out", str(out), *args]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    if "--json" in args:  # one JSON object on stdout in all, from rank 0
        assert json.loads(res.stdout)["metrics"] == metrics
    return metrics


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    args = ["--set", "layouts.limit=8", "--set", "sampler.steps=3", "--set", "sampler.batch_size=2",
            "--set", "detector.batch_size=2", "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = _torchrun(1, tmp_path / "one", args, env)
    two = _torchrun(2, tmp_path / "two", args, env)
    assert one == two
    assert not list((tmp_path / "two").glob("*.rank*.jsonl"))
    rows = (tmp_path / "two" / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 8
    m = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m["world_size"] == 2
