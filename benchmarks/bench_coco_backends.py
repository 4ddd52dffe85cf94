"""hotcoco, faster-coco-eval and pycocotools side by side inside gligen-eval's box-scoring path.

Builds N synthetic generated images with K grounded boxes each (layouts + jittered detections,
misses and false positives), converts them with ``build_eval_inputs`` and times
``evaluate_coco`` with each backend (validation, copies, index building, evaluation, summary). Wall time and
process CPU time are both reported; on a shared machine the CPU-time ratio is the steadier one
(every backend runs on one thread for boxes). ``ratio`` is pycocotools / faster-coco-eval,
``hotcoco_ratio`` pycocotools / hotcoco. Prints a table, or one JSON object with ``--json``.

    python benchmarks/bench_coco_backends.py                 # 5000 images x 7 boxes
    python benchmarks/bench_coco_backends.py --images 500 --json
    python benchmarks/bench_coco_backends.py --bootstrap 1000     # also time the AP bootstraps

``--bootstrap N`` also times N bootstrap draws of AP over layouts, as scoring and ``compare`` run
them: the interval of one run (``bootstrap_interval_s``, per-image matches re-accumulated per draw)
and the paired difference of every COCO key between that run and a second one with re-drawn
detections (``bootstrap_compare_s``, ``compare``'s own statistic); ``--bootstrap-recompute M``
times M draws of evaluating each drawn dataset in full, the way ``compare`` did it before
(``recompute_per_draw_s``; multiply by N for the cost of N draws).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gligen_eval.records import Detection, GroundedObject, Layout
from gligen_eval.scoring import coco

CLASSES = ("person", "dog", "cat", "car", "chair", "bottle", "bird", "kite", "cup", "horse")


def synthetic(n_images: int, n_boxes: int, seed: int = 0, size: tuple[int, int] = (512, 512)):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        objs, dets = [], []
        for _ in range(n_boxes):
            w, h = rng.uniform(0.03, 0.4, 2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            name = CLASSES[int(rng.integers(len(CLASSES)))]
            box = (x0, y0, x0 + w, y0 + h)
            objs.append(GroundedObject(phrase=name, box=box, category=name))
            if rng.random() < 0.85:  # found, with some localisation error
                j = rng.normal(0, 0.03, 4) * np.array([w, h, w, h]) * 3
                db = tuple(float(v) for v in np.clip(np.array(box) + j, 0, 1))
                dets.append(Detection(box=db, label=name, score=float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            x0, y0 = rng.uniform(0, 0.8, 2)
            dets.append(Detection(box=(x0, y0, x0 + 0.1, y0 + 0.2), label=CLASSES[int(rng.integers(len(CLASSES)))],
                                  score=float(rng.random())))  # fmt: skip
        rows.append((f"s{i}", Layout(f"l{i}", "synthetic", tuple(objs)), size[0], size[1], dets))
    return rows


def redetect(rows, seed: int):
    """The same layouts with detections drawn again (another run of the same model, say)."""
    rng = np.random.default_rng(seed)
    out = []
    for key, lay, w, h, _ in rows:
        dets = []
        for o in lay.objects:
            if rng.random() < 0.85:
                bw, bh = o.box[2] - o.box[0], o.box[3] - o.box[1]
                j = rng.normal(0, 0.03, 4) * np.array([bw, bh, bw, bh]) * 3
                db = tuple(float(v) for v in np.clip(np.array(o.box) + j, 0, 1))
                dets.append(Detection(box=db, label=o.category, score=float(rng.random())))
        out.append((key, lay, w, h, dets))
    return out


def time_bootstrap(rows, n_boot: int, n_recompute: int, seed: int = 0) -> dict[str, Any]:
    """Seconds for ``n_boot`` AP draws: one run's interval, and compare's paired difference of two runs."""
    from gligen_eval.reporting.compare import _CocoStat
    from gligen_eval.scoring import stats
    from gligen_eval.scoring.resample import ImageSetAP, bootstrap_ap_interval

    gt, results = coco.build_eval_inputs(rows)
    columns = {lay.layout_id: [i] for i, (_, lay, _, _, _) in enumerate(rows)}
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    ap_set = ImageSetAP(gt, results)
    out["bootstrap_interval_setup_s"] = time.perf_counter() - t0
    lo, hi = bootstrap_ap_interval(ap_set, columns, n_boot=n_boot, seed=seed)
    out["bootstrap_interval_s"] = time.perf_counter() - t0
    out["bootstrap_interval_cpu_s"] = time.process_time() - c0
    out["bootstrap_interval"] = [lo, hi]

    other = redetect(rows, seed + 1)
    a = {lay.layout_id: [row] for row in rows for lay in [row[1]]}
    b = {lay.layout_id: [row] for row in other for lay in [row[1]]}
    t0, c0 = time.perf_counter(), time.process_time()
    st = _CocoStat("bbox", coco.DEFAULT_BACKEND)
    st.register(a)
    st.register(b)
    out["bootstrap_compare_setup_s"] = time.perf_counter() - t0
    for key in coco.metric_keys("bbox"):  # every COCO key of the family, as compare does (one evaluation per draw)
        diff, lo, hi = stats.paired_bootstrap_diff(a, b, st.fn(key), n_boot=n_boot, seed=seed)
        if key == "AP":
            out["bootstrap_compare_AP_diff"] = [diff, lo, hi]
    out["bootstrap_compare_s"] = time.perf_counter() - t0
    out["bootstrap_compare_cpu_s"] = time.process_time() - c0
    if n_recompute:
        slow = _CocoStat("bbox", coco.DEFAULT_BACKEND)  # nothing registered: every draw is evaluated in full
        draws = np.random.default_rng(seed).integers(0, len(rows), size=(n_recompute, len(rows)))
        items = list(a.values())
        t0, c0 = time.perf_counter(), time.process_time()
        for row in draws:
            slow.metrics([items[j] for j in row])
        out["recompute_per_draw_s"] = (time.perf_counter() - t0) / n_recompute
        out["recompute_per_draw_cpu_s"] = (time.process_time() - c0) / n_recompute
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--boxes", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per backend (the best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N", help="also time N bootstrap draws of AP")
    ap.add_argument("--bootstrap-recompute", type=int, default=0, metavar="M",
                    help="also time M draws evaluated in full (the cost per draw without re-accumulation)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rows = synthetic(args.images, args.boxes, args.seed)
    t0 = time.perf_counter()
    gt, results = coco.build_eval_inputs(rows)
    t_build = time.perf_counter() - t0

    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    metrics: dict[str, dict[str, float]] = {}
    for backend in ("hotcoco", "faster", "pycocotools"):
        best = best_cpu = float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            metrics[backend] = coco.evaluate_coco(gt, results, backend=backend)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        times[backend] = best
        cpu[backend] = best_cpu
    diffs = {b: max(abs(metrics[b][k] - metrics["pycocotools"][k]) for k in metrics[b]) for b in ("hotcoco", "faster")}
    max_diff = max(diffs.values())
    out = {
        "images": args.images,
        "boxes_per_image": args.boxes,
        "ground_truth_boxes": len(gt["annotations"]),
        "detections": len(results),
        "build_inputs_s": round(t_build, 4),
        "pycocotools_s": round(times["pycocotools"], 4),
        "faster_s": round(times["faster"], 4),
        "hotcoco_s": round(times["hotcoco"], 4),
        "ratio": round(times["pycocotools"] / times["faster"], 3),
        "hotcoco_ratio": round(times["pycocotools"] / times["hotcoco"], 3),
        "ratio_with_build": round((times["pycocotools"] + t_build) / (times["faster"] + t_build), 3),
        "pycocotools_cpu_s": round(cpu["pycocotools"], 4),
        "faster_cpu_s": round(cpu["faster"], 4),
        "hotcoco_cpu_s": round(cpu["hotcoco"], 4),
        "cpu_ratio": round(cpu["pycocotools"] / cpu["faster"], 3),
        "hotcoco_cpu_ratio": round(cpu["pycocotools"] / cpu["hotcoco"], 3),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "max_abs_metric_diff": max_diff,
        "max_abs_metric_diff_hotcoco": diffs["hotcoco"],
        "max_abs_metric_diff_faster": diffs["faster"],
        "AP": metrics["faster"]["AP"],
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},  # fmt: skip
        "versions": {m: _version(m) for m in ("pycocotools", "faster_coco_eval", "hotcoco", "numpy")},
        "git": _git_hash(),
    }
    if args.bootstrap:
        out["n_boot"] = args.bootstrap
        out.update(time_bootstrap(rows, args.bootstrap, args.bootstrap_recompute, args.seed))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.images} images x {args.boxes} boxes: {out['ground_truth_boxes']} GT boxes, {out['detections']} detections")
        print(f"  build COCO inputs   {t_build:8.3f} s")
        print(f"  pycocotools         {times['pycocotools']:8.3f} s wall   {cpu['pycocotools']:8.3f} s CPU")
        print(f"  faster-coco-eval    {times['faster']:8.3f} s wall   {cpu['faster']:8.3f} s CPU"
              f"   {out['ratio']:6.2f} x wall {out['cpu_ratio']:6.2f} x CPU   (wall, with input building: "
              f"{out['ratio_with_build']:.2f} x)")  # fmt: skip
        print(f"  hotcoco             {times['hotcoco']:8.3f} s wall   {cpu['hotcoco']:8.3f} s CPU"
              f"   {out['hotcoco_ratio']:6.2f} x wall {out['hotcoco_cpu_ratio']:6.2f} x CPU")  # fmt: skip
        if out["load_average"]:
            print(f"  load average        {out['load_average'][0]:.2f} on {os.cpu_count()} CPUs")
        if args.bootstrap:
            print(f"  AP interval, {args.bootstrap} draws     {out['bootstrap_interval_s']:8.2f} s wall "
                  f"{out['bootstrap_interval_cpu_s']:8.2f} s CPU (set-up {out['bootstrap_interval_setup_s']:.2f} s)")
            print(f"  compare, {args.bootstrap} draws x 2 runs {out['bootstrap_compare_s']:8.2f} s wall "
                  f"{out['bootstrap_compare_cpu_s']:8.2f} s CPU (set-up {out['bootstrap_compare_setup_s']:.2f} s), "
                  "every COCO key")  # fmt: skip
            if "recompute_per_draw_s" in out:
                print(f"  full evaluation per draw     {out['recompute_per_draw_s']:8.3f} s wall "
                      f"{out['recompute_per_draw_cpu_s']:8.3f} s CPU")
        print(f"  max |metric diff|   hotcoco {diffs['hotcoco']:.3g}, faster {diffs['faster']:.3g} to pycocotools"
              f"    (AP {out['AP']:.4f})")  # fmt: skip
    return 0


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
