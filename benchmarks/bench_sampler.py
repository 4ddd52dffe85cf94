"""Throughput of the batched grounded sampler against diffusers' StableDiffusionGLIGENPipeline.

All figures come from one run on the tiny random model (same weights for every contender),
text+box grounding, classifier-free guidance, the β hard cut (the only schedule the pipeline has):

* ``ours``    : our sampler, one batch of B *different* layouts (different object counts);
* ``(a)``     : the diffusers pipeline called once per layout (B calls of batch 1);
* ``(b)``     : the diffusers pipeline's own batch-B call of one repeated layout
  (``num_images_per_prompt=B``), i.e. the best batching can do with the same building blocks;
* overhead: our sampler at batch 1 vs a raw diffusers pipeline call at batch 1.

Targets (CPU, 64 px, 10 steps, batch 8): ours >= 1.2x (a), ours within 5% of (b), overhead <= 5%.
Each contender runs ``--repeats`` times, interleaved, after one warm-up. The ratios use the
fastest run of each (the least disturbed by other processes on a shared machine); the medians
are printed beside them.

    python benchmarks/bench_sampler.py                      # 64 px, 10 steps, batch 8, CPU
    python benchmarks/bench_sampler.py --size 128 --batch 1,4,8,16
    python benchmarks/bench_sampler.py --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PHRASES = ("a dog", "a cat", "a red car", "a person", "a bicycle", "a kite", "a cup", "a chair", "a horse", "a bird")


def synthetic_layouts(n: int, seed: int = 0):
    from gligen_eval.records import GroundedObject, Layout

    rng = np.random.default_rng(seed)
    layouts = []
    for i in range(n):
        k = 1 + (i * 3) % 7  # 1..7 objects, different per layout
        objs = []
        for _ in range(k):
            w, h = rng.uniform(0.1, 0.5, 2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            objs.append(GroundedObject(PHRASES[int(rng.integers(len(PHRASES)))], (x0, y0, x0 + w, y0 + h)))
        caption = " and ".join(o.phrase for o in objs) + " in a park"
        layouts.append(Layout(f"bench-{i}", caption, tuple(objs)))
    return layouts


def _git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    ap.add_argument("--steps", type=int, default=10, help="inference steps (default 10)")
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes (default 8), e.g. 1,4,8,16")
    ap.add_argument("--beta", type=float, default=0.3, help="grounding hard cut (default 0.3)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per contender (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)

    import torch
    from diffusers import StableDiffusionGLIGENPipeline
    from diffusers.utils import logging as dlog

    from gligen_eval.config import SamplerConfig
    from gligen_eval.devices import resolve_device
    from gligen_eval.generation.sampler import GroundedSampler
    from gligen_eval.generation.tiny import tiny_components

    dlog.set_verbosity_error()
    warnings.simplefilter("ignore", FutureWarning)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    layouts = synthetic_layouts(max(batches))

    ours = GroundedSampler(tiny_components(seed=0, sample_size=args.size), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionGLIGENPipeline(**tiny_components(seed=0, sample_size=args.size),
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False).to(device)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)

    def settings(b: int) -> SamplerConfig:
        return SamplerConfig(steps=args.steps, height=args.size, width=args.size, schedule="beta", beta=args.beta,
                             guidance_scale=7.5, batch_size=b)  # fmt: skip

    def run_ours(b: int) -> None:
        ours.generate_arrays(layouts[:b], list(range(b)), settings(b))

    def run_pipe(layout, n: int, seed: int) -> None:
        pipe(prompt=layout.caption, gligen_phrases=layout.phrases, gligen_boxes=[list(x) for x in layout.boxes],
             gligen_scheduled_sampling_beta=args.beta, height=args.size, width=args.size,
             num_inference_steps=args.steps, guidance_scale=7.5, num_images_per_prompt=n,
             generator=[torch.Generator().manual_seed(seed + j) for j in range(n)], output_type="np")  # fmt: skip

    def run_a(b: int) -> None:
        for i in range(b):
            run_pipe(layouts[i], 1, i)

    def run_b(b: int) -> None:
        run_pipe(layouts[0], b, 0)

    def timed(fn, b: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn(b)
        _sync(device)
        return time.perf_counter() - t0

    rows = []
    for b in batches:
        contenders = {"ours": run_ours, "a": run_a, "b": run_b}
        if b == 1:
            contenders = {"ours": run_ours, "b": run_b}  # at batch 1, (a) and (b) are the same call
        for fn in contenders.values():  # warm-up
            fn(b)
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                times[name].append(timed(fn, b))
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        ips = {k: b / v for k, v in best.items()}
        ips_med = {k: b / v for k, v in med.items()}
        if "a" not in ips:
            ips["a"], ips_med["a"] = ips["b"], ips_med["b"]
        rows.append({
            "batch": b,
            "seconds": best,
            "seconds_all": times,
            "images_per_s": ips,
            "images_per_s_median": ips_med,
            "ours_vs_a": ips["ours"] / ips["a"],
            "ours_vs_b": ips["ours"] / ips["b"],
        })  # fmt: skip

    one = next((r for r in rows if r["batch"] == 1), None)
    if one is None:  # overhead at batch 1 is always measured
        for fn in (run_ours, run_b):
            fn(1)
        t = {"ours": [], "b": []}
        for _ in range(args.repeats):
            t["ours"].append(timed(run_ours, 1))
            t["b"].append(timed(run_b, 1))
        overhead = min(t["ours"]) / min(t["b"]) - 1
    else:
        overhead = one["seconds"]["ours"] / one["seconds"]["b"] - 1

    result = {
        "benchmark": "sampler",
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "size": args.size,
        "steps": args.steps,
        "beta": args.beta,
        "repeats": args.repeats,
        "rows": rows,
        "overhead_batch1": overhead,
        "targets": {"ours_vs_a_min": 1.2, "ours_vs_b_min": 0.95, "overhead_max": 0.05},
        "git": _git_hash(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    print(f"grounded sampler vs diffusers GLIGEN pipeline: tiny model, {args.size} px, {args.steps} steps, "
          f"beta {args.beta}, CFG, {result['device']} ({result['threads']} threads), best of {args.repeats} "
          f"(median in brackets)")  # fmt: skip
    heads = ("ours img/s", "(a) per-layout", "(b) own batch")
    print(f"{'batch':>5} | " + " | ".join(f"{h:>16}" for h in heads) + f" | {'ours/(a)':>8} | {'ours/(b)':>8}")
    for r in rows:
        ips, med = r["images_per_s"], r["images_per_s_median"]
        cells = " | ".join(f"{ips[k]:>7.2f} ({med[k]:>6.2f})" for k in ("ours", "a", "b"))
        print(f"{r['batch']:>5} | {cells} | {r['ours_vs_a']:>7.2f}x | {r['ours_vs_b']:>7.2f}x")
    print(f"overhead at batch 1 (ours vs a raw diffusers call): {overhead * 100:+.1f}%")
    for r in rows:
        if r["batch"] == 8:
            ok_a = r["ours_vs_a"] >= 1.2
            ok_b = r["ours_vs_b"] >= 0.95
            print(f"targets at batch 8: ours >= 1.2x (a): {'met' if ok_a else 'NOT met'}; "
                  f"within 5% of (b): {'met' if ok_b else 'NOT met'}; "
                  f"overhead <= 5%: {'met' if overhead <= 0.05 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
