"""Scale benchmark: cache reuse on rerun, peak memory vs number of layouts, 2 processes vs 1.

Prints ratios measured in one run on the tiny model (CPU, small images):

* rerun of a finished run: images generated (target 0), wall and CPU time vs the first run (target <= 5%)
  and whether the generator was built (target: not);
* peak RSS of a run at N_small vs N_large layouts (target growth <= 15%);
* ``torchrun`` with 2 processes vs 1: identical metrics, wall times.

Usage: ``python benchmarks/bench_scale.py [--small 100 --large 1000 --size 32 --steps 2]``
(``--skip-dist`` / ``--skip-rss`` to run parts). Each run is a fresh ``gligen-eval`` process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COCO_NAMES = ["person", "dog", "cat", "car", "bicycle", "chair", "cup", "bottle", "bird", "horse",
              "umbrella", "bench", "tv", "laptop", "clock", "vase", "book", "bowl", "couch", "bus"]  # fmt: skip

MEASURE = """
import resource, sys, time
from gligen_eval.cli import main
t = time.perf_counter()
rc = main(sys.argv[2:])
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
open(sys.argv[1], "w").write(f"{rc} {wall} {ru.ru_maxrss} {ru.ru_utime + ru.ru_stime} {int('diffusers' in sys.modules)}")
sys.exit(rc)
"""


def write_layouts(path: Path, n: int, seed: int = 0) -> Path:
    from gligen_eval.layouts.jsonl import write_jsonl
    from gligen_eval.records import GroundedObject, Layout

    rng = random.Random(seed)
    layouts = []
    for i in range(n):
        objs = []
        for _ in range(rng.randint(1, 6)):
            x0, y0 = rng.uniform(0, 0.6), rng.uniform(0, 0.6)
            w, h = rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4)
            name = rng.choice(COCO_NAMES)
            objs.append(GroundedObject(name, (x0, y0, x0 + w, y0 + h), category=name))
        caption = "a photo of " + ", ".join(sorted({o.phrase for o in objs}))
        layouts.append(Layout(f"bench-{i:05d}", caption, tuple(objs)))
    return write_jsonl(layouts, path)


def run_cli(out: Path, layouts: Path, args: argparse.Namespace, *extra: str, env=None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one ``gligen-eval run`` process (its CPU seconds and whether it
    imported diffusers, i.e. built a generator, go to ``LAST``)."""
    stat = Path(tempfile.mktemp(suffix=".txt"))
    cmd = [sys.executable, "-c", MEASURE, str(stat), "run", "--out", str(out), "--no-progress",
           "--set", f"layouts.source={layouts}", "--set", f"sampler.height={args.size}",
           "--set", f"sampler.width={args.size}", "--set", f"sampler.steps={args.steps}",
           "--set", f"detector.imgsz={max(32, args.size)}", "--set", "sampler.batch_size=8", *extra]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rc, wall, rss, cpu, diffusers = stat.read_text().split()
    stat.unlink()
    LAST.update(cpu=float(cpu), diffusers=diffusers == "1")
    return float(wall), int(rss)


LAST: dict = {}


def count_lines(p: Path) -> int:
    return sum(1 for line in p.read_text().splitlines() if line.strip()) if p.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-dist", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    tmp = Path(tempfile.mkdtemp(prefix="gligen-bench-"))
    small = write_layouts(tmp / "small.jsonl", args.small)

    print(f"# tiny model, {args.size}px, {args.steps} steps, CPU, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    first, rss_small = run_cli(tmp / "a", small, args, env=env)
    first_cpu = LAST["cpu"]
    images = {p.name: p.stat().st_mtime_ns for p in (tmp / "a" / "images").iterdir()}
    rerun, _ = run_cli(tmp / "a", small, args, env=env)
    rerun_cpu, built = LAST["cpu"], LAST["diffusers"]
    regenerated = sum(1 for p in (tmp / "a" / "images").iterdir() if images.get(p.name) != p.stat().st_mtime_ns)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, ultralytics, gligen_eval.runner"],  # what a rerun imports
                   check=True, env=env)  # fmt: skip
    floor = time.perf_counter() - t
    print(f"first run ({args.small} layouts):  {first:7.2f} s")
    print(f"rerun of the finished run:   {rerun:7.2f} s  = {rerun / first:6.1%} of the first run "
          f"(target <= 5%); images regenerated: {regenerated} (target 0)")  # fmt: skip
    print(f"  CPU time: {rerun_cpu:.2f} s against {first_cpu:.2f} s = {rerun_cpu / first_cpu:6.1%}; generator built: "
          f"{'yes' if built else 'no'} (target no)")  # fmt: skip
    print(f"  of which starting Python and importing torch/ultralytics: {floor:.2f} s; "
          f"the rest, {max(0.0, rerun - floor):.2f} s, is {max(0.0, rerun - floor) / first:.1%} of the first run")  # fmt: skip

    if not args.skip_rss:
        large = write_layouts(tmp / "large.jsonl", args.large)
        wall_l, rss_large = run_cli(tmp / "b", large, args, env=env)
        print(f"peak RSS {args.small:>5} layouts: {rss_small / 1024:8.1f} MiB")
        print(f"peak RSS {args.large:>5} layouts: {rss_large / 1024:8.1f} MiB  growth {rss_large / rss_small - 1:+.1%} "
              f"(target <= +15%); wall {wall_l:.1f} s")  # fmt: skip

    if not args.skip_dist:
        walls, metrics = {}, {}
        for n in (1, 2):
            out = tmp / f"dist{n}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
                   str(29600 + n), "-m", "gligen_eval", "run", "--out", str(out), "--no-progress",
                   "--set", f"layouts.source={small}", "--set", f"sampler.height={args.size}",
                   "--set", f"sampler.width={args.size}", "--set", f"sampler.steps={args.steps}",
                   "--set", f"detector.imgsz={max(32, args.size)}", "--set", "sampler.batch_size=8"]  # fmt: skip
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[n] = time.perf_counter() - t
            metrics[n] = json.loads((out / "metrics.json").read_text())
        same = metrics[1] == metrics[2]
        print(f"torchrun 1 process: {walls[1]:7.2f} s; 2 processes: {walls[2]:7.2f} s "
              f"(speed-up {walls[1] / walls[2]:.2f}x); metrics identical: {same}")  # fmt: skip
    print(f"(outputs in {tmp})")


if __name__ == "__main__":
    main()
