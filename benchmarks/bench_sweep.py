"""A τ sweep generated as a tree vs each τ run on its own, in one run.

The full config's sweep ``[0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]`` and a 21-point sweep (τ = 0, 0.05, ..., 1)
over the same layouts and seeds: UNet evaluations (counted with a forward hook) and wall time of
:meth:`GroundedSampler.generate_branches` against one :meth:`generate_tensors` call per τ, and whether
every τ's images are identical. Expected UNet-evaluation ratios: 7 / 5.2 = 1.35x and 21 / 11.5 = 1.83x
(wall time gains less: the ungrounded steps a tree saves are the cheaper ones, without the gated layers).

    python benchmarks/bench_sweep.py                       # tiny model, 64 px, 20 DDIM steps, 8 layouts
    python benchmarks/bench_sweep.py --steps 40 --size 128 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SWEEPS = {
    "full config (7 τ)": [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0],
    "21 points": [round(k / 20, 2) for k in range(21)],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--layouts", type=int, default=8)
    ap.add_argument("--scheduler", default="ddim", help="ddim: as many loop steps as --steps (pndm adds one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from bench_sampler import synthetic_layouts
    from gligen_eval.config import SamplerConfig
    from gligen_eval.generation.sampler import GroundedSampler, tree_steps
    from gligen_eval.generation.tiny import tiny_components

    sampler = GroundedSampler(tiny_components(seed=0, sample_size=args.size), device=args.device)
    evaluations = [0]
    sampler.unet.register_forward_pre_hook(lambda *_: evaluations.__setitem__(0, evaluations[0] + 1))
    layouts = synthetic_layouts(args.layouts)
    seeds = list(range(len(layouts)))

    def settings(tau: float) -> SamplerConfig:
        return SamplerConfig(steps=args.steps, height=args.size, width=args.size, scheduler=args.scheduler,
                             schedule="alpha", alpha=[tau, 0.0, 1.0 - tau], batch_size=len(layouts))  # fmt: skip

    def measure(fn):
        evaluations[0] = 0
        t0 = time.perf_counter()
        out = fn()
        return out, evaluations[0], time.perf_counter() - t0

    sampler.generate_tensors(layouts[:1], seeds[:1], settings(0.3))  # warm-up
    if not args.json:
        print(f"tiny model, {args.size} px, {args.steps} {args.scheduler} steps, {len(layouts)} layouts in one batch, "
              f"CFG, {args.device}", flush=True)  # fmt: skip
    rows = []
    for name, taus in SWEEPS.items():
        branches = [settings(t) for t in taus]
        n = sampler._loop_length(branches[0])
        expected = len(taus) * n / tree_steps([sampler._scales(n, b) for b in branches])
        tree, tree_evals, tree_s = measure(lambda: sampler.generate_branches(layouts, seeds, branches))
        alone, alone_evals, alone_s = measure(lambda: [sampler.generate_tensors(layouts, seeds, b) for b in branches])
        rows.append({
            "sweep": name, "points": len(taus), "loop_steps": n,
            "unet_evals": {"tree": tree_evals, "separate": alone_evals}, "expected_eval_ratio": round(expected, 3),
            "eval_ratio": round(alone_evals / tree_evals, 3),
            "wall_s": {"tree": round(tree_s, 2), "separate": round(alone_s, 2)}, "wall_ratio": round(alone_s / tree_s, 3),
            "identical": all(torch.equal(a, b) for a, b in zip(tree, alone)),
        })  # fmt: skip
        if not args.json:
            print(_line(rows[-1]), flush=True)
    info = {"device": args.device, "platform": platform.processor() or platform.machine(), "size": args.size,
            "steps": args.steps, "scheduler": args.scheduler, "layouts": len(layouts), "torch_threads": torch.get_num_threads()}  # fmt: skip
    if args.json:
        print(json.dumps({"info": info, "sweeps": rows}, indent=2))
        return 0
    return 0 if all(r["identical"] for r in rows) else 1


def _line(r: dict) -> str:
    return (f"{r['sweep']:>18}: UNet evaluations tree {r['unet_evals']['tree']} vs separate "
            f"{r['unet_evals']['separate']} = {r['eval_ratio']:.2f}x (expected {r['expected_eval_ratio']:.2f}x); "
            f"wall {r['wall_s']['tree']:.1f} s vs {r['wall_s']['separate']:.1f} s = {r['wall_ratio']:.2f}x; "
            f"images identical: {r['identical']}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
