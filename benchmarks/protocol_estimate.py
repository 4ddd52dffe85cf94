"""What the paper protocol (COCO2014, 30K images, 512 px, 50 steps, CFG) costs on this device.

Two measurements, one run:

* **Counted FLOPs** of one denoising step (the UNet on the CFG batch of 2, GLIGEN grounding on),
  with ``torch.utils.flop_counter`` on the meta device: nothing is computed, so counting at 512 px
  is instant even on a CPU. Counted at the measured size and at 512 px.
* **Measured time split** of one end-to-end pass of our sampler plus what a run adds around it:
  text encoding, UNet evaluations and VAE decode (timed by hooks on the modules, with CUDA
  synchronisation), PNG encoding of the images, and the detector (ultralytics, random weights
  built from its ``.yaml``). The shares say where time goes outside the UNet.

The 30K estimate is ``30000 × seconds per image`` at the measured settings. When those are not the
protocol's (a CPU smoke run at 64 px, a few steps), the UNet part is extrapolated to 512 px and 50
steps by the counted FLOP ratio at the measured FLOP rate, and the other parts by pixel count; the
result is labelled an extrapolation. Estimates for N devices divide by N (ideal scaling of the
independent generation chunks; the final scoring runs once on rank 0 and is not counted).
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from typing import Any, Sequence

PROTOCOL = {"images": 30000, "size": 512, "steps": 50}


def step_flops(unet: Any, *, size: int, batch: int = 1) -> int:
    """FLOPs of one UNet evaluation on a CFG batch (2 × ``batch``) at ``size`` px, text+box grounding."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = dict(unet.config)
    config["sample_size"] = size // 8
    with torch.device("meta"):
        meta = UNet2DConditionModel.from_config(config)
        b = 2 * batch
        x = torch.empty(b, int(config["in_channels"]), size // 8, size // 8)
        context = torch.empty(b, 77, int(config["cross_attention_dim"]))
        n = 30
        gligen = {"boxes": torch.empty(b, n, 4), "masks": torch.empty(b, n),
                  "positive_embeddings": torch.empty(b, n, int(config["cross_attention_dim"]))}  # fmt: skip
        with FlopCounterMode(display=False) as counter:
            meta(x, torch.tensor(999), encoder_hidden_states=context, cross_attention_kwargs={"gligen": gligen})
    return int(counter.get_total_flops())


class _Timer:
    """Accumulates the wall time spent inside chosen modules' ``forward`` (or a given method)."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.seconds: dict[str, float] = {}

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @contextmanager
    def part(self, name: str):
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def wrap(self, obj: Any, method: str, name: str) -> None:
        original = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any):
            with self.part(name):
                return original(*args, **kwargs)

        setattr(obj, method, timed)


def _detector_seconds(images: Sequence[Any], *, weights: str, device: str) -> float:
    import os
    import tempfile

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
    from ultralytics import YOLO

    model = YOLO(weights)
    dev = 0 if str(device).startswith("cuda") else "cpu"
    model.predict(list(images[:1]), imgsz=640, conf=0.001, device=dev, verbose=False)  # warm-up
    t = time.perf_counter()
    model.predict(list(images), imgsz=640, conf=0.001, device=dev, verbose=False)
    return time.perf_counter() - t


def estimate_protocol(components: dict[str, Any], layouts: Sequence[Any], *, device: str, device_name: str,
                      dtype: Any, size: int, steps: int, detector: str = "yolov8x.yaml") -> dict[str, Any]:  # fmt: skip
    """Measure one end-to-end batch of ``layouts`` and estimate the 30K protocol; returns plain numbers."""
    from gligen_eval.config import SamplerConfig
    from gligen_eval.generation.sampler import GroundedSampler

    sampler = GroundedSampler(components, device=device, dtype=dtype)
    settings = SamplerConfig(steps=steps, height=size, width=size, batch_size=len(layouts), schedule="alpha",
                             alpha=[0.3, 0.0, 0.7])  # fmt: skip
    seeds = list(range(len(layouts)))
    sampler.generate(layouts, seeds, settings, progress=False)  # warm-up
    timer = _Timer(device)
    timer.wrap(components["text_encoder"], "forward", "text_encoder")
    timer.wrap(components["unet"], "forward", "unet")
    timer.wrap(components["vae"], "decode", "vae_decode")
    with timer.part("sampler"):
        images = sampler.generate(layouts, seeds, settings, progress=False)
    with timer.part("png"):
        for img in images:
            buf = io.BytesIO()
            img.save(buf, format="PNG")
    timer.seconds["detector"] = _detector_seconds(images, weights=detector, device=device)
    s = timer.seconds
    n = len(layouts)
    other_sampler = max(0.0, s["sampler"] - s["unet"] - s["text_encoder"] - s["vae_decode"])
    parts = {"unet": s["unet"], "text_encoder": s["text_encoder"], "vae_decode": s["vae_decode"],
             "sampler_other": other_sampler, "png": s["png"], "detector": s["detector"]}  # fmt: skip
    total = sum(parts.values())
    flops_here = step_flops(components["unet"], size=size)
    flops_protocol = step_flops(components["unet"], size=PROTOCOL["size"])
    unet_evals = n * steps  # one CFG evaluation per step and image (the batch is folded into the rate)
    flop_rate = flops_here * unet_evals / s["unet"] if s["unet"] > 0 else float("nan")
    at_protocol = size == PROTOCOL["size"] and steps == PROTOCOL["steps"]
    if at_protocol:
        s_per_image = total / n
    else:  # UNet by counted FLOPs at the measured rate; the rest by pixels (VAE, PNG) or as measured
        unet_s = flops_protocol * PROTOCOL["steps"] / flop_rate
        pixels = (PROTOCOL["size"] / size) ** 2
        rest = (parts["vae_decode"] + parts["png"]) * pixels + parts["text_encoder"] + parts["detector"]
        rest += parts["sampler_other"] * PROTOCOL["steps"] / steps
        s_per_image = unet_s + rest / n
    wall_1 = PROTOCOL["images"] * s_per_image
    return {
        "device": device_name, "size": size, "steps": steps, "batch": n,
        "seconds": parts, "shares": {k: v / total for k, v in parts.items()},
        "outside_unet_share": 1.0 - parts["unet"] / total,
        "images_per_s": n / total,
        "step_tflops": {"measured_size": flops_here / 1e12, "512px": flops_protocol / 1e12},
        "achieved_tflop_per_s": flop_rate / 1e12,
        "protocol": dict(PROTOCOL), "extrapolated": not at_protocol,
        "protocol_s_per_image": s_per_image,
        "protocol_wall_h": {"1": wall_1 / 3600, "8": wall_1 / 8 / 3600},
    }  # fmt: skip


def format_estimate(e: dict[str, Any]) -> str:
    shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in e["shares"].items())
    how = "extrapolated from" if e["extrapolated"] else "measured at"
    return "\n".join([
        f"{e['device']} | end to end {e['size']}px {e['steps']} steps batch {e['batch']}: "
        f"{e['images_per_s']:.3f} img/s (generation + PNG + detector)",
        f"  time split: {shares}; outside the UNet {100 * e['outside_unet_share']:.1f}%",
        f"  one denoising step (CFG batch 2): {e['step_tflops']['measured_size']:.3f} TFLOP at {e['size']}px, "
        f"{e['step_tflops']['512px']:.3f} TFLOP at 512px; achieved {e['achieved_tflop_per_s']:.3f} TFLOP/s",
        f"  COCO2014 30K protocol (512px, 50 steps), {how} this run: {e['protocol_s_per_image']:.2f} s/img → "
        f"estimated {e['protocol_wall_h']['1']:.1f} h on 1 device, {e['protocol_wall_h']['8']:.1f} h on 8 (ideal scaling)",
    ])  # fmt: skip
