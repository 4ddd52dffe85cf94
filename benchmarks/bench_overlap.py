"""Generation with the PNG writer overlapped (``sampler.write_overlap: true``) vs sequential, in one run.

Both contenders run the runner's own generation step (:func:`gligen_eval.runner.generate_missing`)
over the same 64 different layouts (tiny random model, 128 px, few steps) into a fresh run
directory, so what differs is only where the PNGs are encoded, written (atomically, with fsync) and
their rows appended. Each contender runs ``--repeats`` times, interleaved, after one warm-up; the
ratio uses the fastest run of each (least disturbed by other processes), medians are printed beside.
CPU time (this process, all threads) is printed too: on a shared machine it tells whether a slow
run was slow or starved. The images of both contenders are checked to be byte-identical.

Then seconds per PNG (encode + atomic write) at 128 and 512 px on images of the tiny model: the
share of the writer grows with the image size.

    python benchmarks/bench_overlap.py                    # 64 layouts, 128 px, 4 steps, batch 8, CPU
    python benchmarks/bench_overlap.py --layouts 32 --steps 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sampler import synthetic_layouts  # noqa: E402


def build(cfg, device: str):
    """The sampler and requests of ``cfg`` as :func:`gligen_eval.runner._run_single` builds them."""
    from gligen_eval.generation.grounding import default_grounding
    from gligen_eval.generation.loading import describe, load_components, resolve_dtype
    from gligen_eval.generation.modalities import default_alpha
    from gligen_eval.generation.sampler import GroundedSampler
    from gligen_eval.records import stable_hash
    from gligen_eval.runner import settings_for_key

    comps = load_components("tiny", device=device, dtype="float32", tiny_seed=0,
                            sample_size=max(cfg.sampler.height, cfg.sampler.width))  # fmt: skip
    grounding = default_grounding(comps)
    sampler = GroundedSampler(comps, device=device, dtype=resolve_dtype("float32"), grounding=grounding)
    alpha = list(cfg.sampler.alpha) if cfg.sampler.alpha is not None else default_alpha(grounding.describe()["modality"])
    sampler_cfg = dataclasses.replace(cfg.sampler, alpha=alpha)
    settings = settings_for_key(cfg, alpha=alpha, grounding=grounding.describe())
    fp = stable_hash({k: v["fingerprint"] for k, v in describe(comps).items() if isinstance(v, dict) and "fingerprint" in v})
    return sampler, sampler_cfg, settings, fp


def generate_once(root: Path, requests, sampler, sampler_cfg, settings, overlap: bool) -> tuple[float, float, dict]:
    from gligen_eval import store
    from gligen_eval.runner import generate_missing

    shutil.rmtree(root, ignore_errors=True)
    rd = store.RunDir(root)
    store.ensure_dir(rd.root)
    cfg = dataclasses.replace(sampler_cfg, write_overlap=overlap)
    t, c = time.perf_counter(), time.process_time()
    generate_missing(rd, requests, sampler, cfg, settings, progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return wall, cpu, {p.name: p.read_bytes() for p in rd.images.iterdir()}


def seconds_per_png(images, root: Path, repeats: int) -> float:
    from gligen_eval import store
    from gligen_eval.writer import encode_png

    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        for i, img in enumerate(images):
            store.atomic_write_bytes(root / f"png-{r}-{i}.png", encode_png(img))
        best = min(best, (time.perf_counter() - t) / len(images))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layouts", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from gligen_eval.config import config_from_dict
    from gligen_eval.runner import make_requests

    torch.set_num_threads(args.threads)
    cfg = config_from_dict({"sampler": {"steps": args.steps, "height": args.size, "width": args.size,
                                        "batch_size": args.batch}})  # fmt: skip
    sampler, sampler_cfg, settings, fp = build(cfg, args.device)
    requests = make_requests(synthetic_layouts(args.layouts), cfg, fp, settings)
    tmp = Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    try:
        generate_once(tmp / "warm", requests[: args.batch], sampler, sampler_cfg, settings, True)
        runs: dict[str, list[tuple[float, float]]] = {"sequential": [], "overlapped": []}
        images: dict[str, dict] = {}
        for _ in range(args.repeats):
            for name in runs:
                wall, cpu, images[name] = generate_once(tmp / name, requests, sampler, sampler_cfg, settings,
                                                        name == "overlapped")  # fmt: skip
                runs[name].append((wall, cpu))
        identical = images["sequential"] == images["overlapped"]

        per_png = {}
        for size in sorted({args.size, 512}):
            c = dataclasses.replace(sampler_cfg, height=size, width=size, steps=1)
            s, _, _, _ = build(dataclasses.replace(cfg, sampler=c), args.device)
            imgs = s.generate([r.layout for r in requests[:4]], [r.seed for r in requests[:4]], c, progress=False)
            per_png[size] = seconds_per_png(imgs, tmp, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {k: min(w for w, _ in v) for k, v in runs.items()}
    result = {
        "layouts": args.layouts, "size": args.size, "steps": args.steps, "batch": args.batch,
        "threads": torch.get_num_threads(), "device": args.device, "repeats": args.repeats,
        "wall_s": {k: [round(w, 3) for w, _ in v] for k, v in runs.items()},
        "cpu_s": {k: [round(c, 3) for _, c in v] for k, v in runs.items()},
        "best_wall_s": {k: round(v, 3) for k, v in best.items()},
        "median_wall_s": {k: round(statistics.median(w for w, _ in v), 3) for k, v in runs.items()},
        "ratio_sequential_over_overlapped": round(best["sequential"] / best["overlapped"], 3),
        "identical_images": identical,
        "seconds_per_png": {str(k): round(v, 4) for k, v in per_png.items()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.layouts} layouts, {args.size} px, {args.steps} steps, batch {args.batch}, {args.device}, "
              f"{result['threads']} torch thread(s), best of {args.repeats}")  # fmt: skip
        for k in runs:
            print(f"  {k:10s}: wall {best[k]:.2f} s (median {result['median_wall_s'][k]:.2f}), "
                  f"CPU {', '.join(f'{c:.2f}' for _, c in runs[k])} s")  # fmt: skip
        print(f"  sequential / overlapped wall: {result['ratio_sequential_over_overlapped']:.3f}x; "
              f"identical images: {identical}")  # fmt: skip
        for k, v in per_png.items():
            print(f"  seconds per PNG (encode + atomic write) at {k} px: {v:.4f}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
