"""Time per 1000 images of each image scorer on CPU (tiny / small models).

Scorers timed, each after one warm-up batch, on synthetic PNG files written to a temporary folder:

* ``fid-small``     : FID + KID with a small convolutional feature module (64 features), reading
                      PNG files, resize policy ``center-crop-then-resize-bicubic-64``;
* ``fid-inception`` : FID + KID with torch-fidelity's Inception (2048 features, 299 px), when its
                      weights file is present locally; with ``--random-inception`` the same network
                      with random weights (same compute) when it is not; otherwise skipped;
* ``clip-tiny``     : global + regional CLIP scores with the tiny random CLIP (4 objects per image);
* ``openvocab-tiny``: the OWLv2 detector, tiny random model, 4 phrases per image;
* ``bootstrap``     : a 1000-draw bootstrap interval over 1000 layouts (time per call).

Model building is timed separately and not included in the per-image figures.

    python benchmarks/bench_scorers.py                    # 200 images (50 for Inception), 1 thread
    python benchmarks/bench_scorers.py --images 500 --json
    python benchmarks/bench_scorers.py --random-inception   # time Inception without its weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHRASES = ("a dog", "a cat", "a red car", "a person", "a bicycle", "a kite", "a cup", "a chair")


def write_images(folder: Path, n: int, size: int, seed: int) -> list[Path]:
    """Smooth random colour fields (cheap to decode, not constant)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
        p = folder / f"{i:05d}.png"
        img.save(p)
        paths.append(p)
    return paths


def layouts_for(n: int, seed: int):
    from gligen_eval.records import GroundedObject, Layout

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        objs = []
        for _ in range(4):
            w, h = rng.uniform(0.1, 0.5, 2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            objs.append(GroundedObject(PHRASES[int(rng.integers(len(PHRASES)))], (x0, y0, x0 + w, y0 + h)))
        out.append(Layout(f"l{i}", "a photo of " + " and ".join(o.phrase for o in objs), tuple(objs)))
    return out


def small_feature_module():
    import torch

    class SmallFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.c1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
            for layer in (self.c1, self.c2):
                with torch.no_grad():
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.c1(x.float() / 127.5 - 1.0))
            y = torch.relu(self.c2(y))
            return torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)

    return SmallFeatures()


def random_inception(folder: Path):
    """torch-fidelity's Inception (through torchmetrics) with random weights: same compute as the real one."""
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from torchmetrics.image.fid import NoTrainInceptionV3

    from gligen_eval.scoring.quality import FeatureExtractor

    empty = folder / "empty.pth"
    torch.save({}, empty)
    original = tfi.FeatureExtractorInceptionV3.load_state_dict
    tfi.FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None  # type: ignore[method-assign]
    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(empty))
    finally:
        tfi.FeatureExtractorInceptionV3.load_state_dict = original  # type: ignore[method-assign]
    return FeatureExtractor(net, name="inception-v3-compat/2048 (random weights)", fingerprint="random", num_features=2048)


def per_1000(seconds: float, n: int) -> float:
    return round(seconds / n * 1000.0, 3)


def bench_fid(paths_real, paths_fake, extractor, resize, batch_size):
    from gligen_eval.scoring.quality import FidKidScorer

    scorer = FidKidScorer(extractor, resize, batch_size=batch_size, kid_subsets=100, kid_subset_size=min(1000, len(paths_fake)))
    scorer.compute_stats(paths_real[:batch_size], keep_features=False)  # warm-up
    t0 = time.perf_counter()
    stats = scorer.compute_stats(paths_real)
    t_ref = time.perf_counter() - t0
    scorer.set_reference(stats)
    t0 = time.perf_counter()
    scorer.update(paths_fake)
    t_upd = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = scorer.compute()
    t_cmp = time.perf_counter() - t0
    n = len(paths_real) + len(paths_fake)
    return {"images": n, "s_per_1000_images": per_1000(t_ref + t_upd, n), "compute_s": round(t_cmp, 4), "fid": out["fid"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="images per scorer (half real, half generated for FID)")
    ap.add_argument("--inception-images", type=int, default=50)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--random-inception", action="store_true", help="time Inception with random weights when the file is absent")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from gligen_eval.errors import MissingWeightsError
    from gligen_eval.scoring.clip import ClipScorer, tiny_clip
    from gligen_eval.scoring.openvocab import OwlDetector, tiny_owlv2
    from gligen_eval.scoring.quality import ResizePolicy, custom_extractor, default_inception_weights_path, inception_extractor
    from gligen_eval.scoring.stats import bootstrap_ci

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_images(folder, args.images, args.size, seed=0)
        half = len(paths) // 2

        t0 = time.perf_counter()
        small = custom_extractor(small_feature_module(), name="small-conv", input_size=args.size)
        results["fid-small"] = {"build_s": round(time.perf_counter() - t0, 3),
                                **bench_fid(paths[:half], paths[half:], small, ResizePolicy("center-crop", args.size), args.batch)}  # fmt: skip

        inc, weights = None, "real"
        t0 = time.perf_counter()
        try:
            inc = inception_extractor(2048)
        except MissingWeightsError:
            if args.random_inception:
                inc, weights = random_inception(folder), "random"
        build = time.perf_counter() - t0
        if inc is None:
            results["fid-inception"] = {"skipped": f"weights not present at {default_inception_weights_path()} "
                                                   "(--random-inception times the network with random weights)"}  # fmt: skip
        else:
            k = max(4, args.inception_images // 2)
            results["fid-inception"] = {"build_s": round(build, 3), "weights": weights,
                                        **bench_fid(paths[:k], paths[k : 2 * k], inc, ResizePolicy(), args.batch)}  # fmt: skip

        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in paths]
        layouts = layouts_for(len(images), seed=1)

        t0 = time.perf_counter()
        model, processor = tiny_clip(seed=0)
        clip = ClipScorer(model, processor, name="tiny-clip", device="cpu", batch_size=args.batch)
        build = time.perf_counter() - t0
        clip.score_layouts(images[: args.batch], layouts[: args.batch])
        t0 = time.perf_counter()
        clip.score_layouts(images, layouts)
        t = time.perf_counter() - t0
        results["clip-tiny"] = {"build_s": round(build, 3), "images": len(images), "objects_per_image": 4,
                                "s_per_1000_images": per_1000(t, len(images))}  # fmt: skip

        t0 = time.perf_counter()
        model, processor = tiny_owlv2(seed=0)
        det = OwlDetector("tiny-owlv2", conf=0.0, model=model, processor=processor, device="cpu", batch_size=args.batch)
        build = time.perf_counter() - t0
        phrases = [[o.phrase for o in lay.objects] for lay in layouts]
        det.detect(images[: args.batch], phrases[: args.batch])
        t0 = time.perf_counter()
        det.detect(images, phrases)
        t = time.perf_counter() - t0
        results["openvocab-tiny"] = {"build_s": round(build, 3), "images": len(images), "phrases_per_image": 4,
                                     "s_per_1000_images": per_1000(t, len(images))}  # fmt: skip

    rng = np.random.default_rng(0)
    values = {f"l{i}": list(rng.uniform(size=5)) for i in range(1000)}
    t0 = time.perf_counter()
    bootstrap_ci(values, "pooled_mean", n_boot=1000, seed=0)
    results["bootstrap"] = {"layouts": 1000, "draws": 1000, "s_per_call": round(time.perf_counter() - t0, 4)}

    out = {
        "results": results,
        "image_size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},  # fmt: skip
        "versions": {m: _version(m) for m in ("torch", "transformers", "torchmetrics", "torch-fidelity")},
        "git": _git_hash(),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"CPU, {args.threads} threads, {args.size} px images, batch {args.batch}")
    for name, r in results.items():
        if "skipped" in r:
            print(f"  {name:16s} skipped: {r['skipped']}")
        elif "s_per_1000_images" in r:
            print(f"  {name:16s} {r['s_per_1000_images']:9.2f} s / 1000 images   (build {r['build_s']:.2f} s, {r['images']} images timed)")
        else:
            print(f"  {name:16s} {r['s_per_call']:9.3f} s per interval ({r['layouts']} layouts, {r['draws']} draws)")
    return 0


def _git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
