"""Images/s of the grounded sampler on the real SD-1.4-sized architecture (random weights).

Builds a full-size gated UNet (the released GLIGEN text+box shape), the SD VAE and a CLIP-L-sized
text encoder with random weights, then times our batched sampler on batches of *different*
layouts for each option set: dtype (fp32/fp16/bf16), attention kernel (sdpa/classic),
channels-last and torch.compile. Prints the device name with every figure.

Then (unless ``--no-estimate``) it estimates the wall time of the paper protocol (COCO2014, 30K
images, 512 px, 50 steps, CFG) on this device, from one measured end-to-end pass (see
:mod:`protocol_estimate`): the FLOPs of one denoising step, counted with
``torch.utils.flop_counter`` on the meta device, the measured time split between text encoding,
UNet, VAE decode, PNG encoding and the detector, and the images/s they give.

    python benchmarks/bench_gpu.py                                  # cuda, 512 px, 50 steps
    python benchmarks/bench_gpu.py --batch 1,8,16 --options fp16,fp16+compile
    python benchmarks/bench_gpu.py --device cpu --size 64 --steps 2 --batch 2 --options fp32   # smoke check
"""

from __future__ import annotations

import argparse
import json
import time


def sd14_components(device: str, dtype, size: int):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gligen_eval.generation.checkpoints import sd14_unet_config
    from gligen_eval.generation.tiny import tiny_scheduler, tiny_tokenizer

    torch.manual_seed(0)
    unet_cfg = sd14_unet_config("text-box")
    unet_cfg["sample_size"] = size // 8
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=size)  # fmt: skip
    tok = tiny_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=max(len(tok), 1000), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        projection_dim=768))  # fmt: skip
    tok.model_max_length = 77
    for m in (unet, vae, text):
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return {"unet": unet, "vae": vae, "text_encoder": text, "tokenizer": tok, "scheduler": tiny_scheduler()}


def layouts(n: int):
    from gligen_eval.records import GroundedObject, Layout

    names = ["dog", "cat", "person", "car", "cup", "chair", "bird", "clock"]
    out = []
    for i in range(n):
        k = 1 + i % 6
        objs = tuple(GroundedObject(names[(i + j) % 8], (0.05 + 0.1 * j, 0.1, 0.3 + 0.1 * j, 0.6)) for j in range(k))
        out.append(Layout(f"l{i}", f"a photo with {k} objects", objs))
    return out


def main() -> None:
    import torch

    from gligen_eval.config import SamplerConfig
    from gligen_eval.generation.performance import apply_performance_options
    from gligen_eval.generation.sampler import GroundedSampler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--options", default="fp32,fp16,bf16,fp16+classic,fp16+channels_last,fp16+compile")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-estimate", action="store_true", help="skip the 30K-protocol estimate")
    ap.add_argument("--detector", default="yolov8x.yaml", help="detector timed in the estimate (random weights)")
    args = ap.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    rows = []
    for spec in args.options.split(","):
        parts = spec.split("+")
        dtype = dtypes[parts[0]]
        opts = {"attention": "classic" if "classic" in parts else "sdpa",
                "channels_last": "channels_last" in parts, "compile": "compile" in parts}  # fmt: skip
        comps = sd14_components(args.device, dtype, args.size)
        apply_performance_options(comps, **opts)
        sampler = GroundedSampler(comps, device=args.device, dtype=dtype)
        for b in (int(x) for x in args.batch.split(",")):
            settings = SamplerConfig(steps=args.steps, height=args.size, width=args.size, batch_size=b,
                                     schedule="alpha", alpha=[0.3, 0.0, 0.7])  # fmt: skip
            batch = layouts(b)
            sampler.generate(batch, list(range(b)), settings, progress=False)  # warm-up (and compile)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            sampler.generate(batch, list(range(b)), settings, progress=False)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append({"device": device_name, "options": spec, "batch": b, "size": args.size, "steps": args.steps,
                         "images_per_s": b / dt, "s_per_image": dt / b})  # fmt: skip
            if not args.json:
                r = rows[-1]
                print(f"{device_name} | {spec:<22} | batch {b:>2} | {args.size}px {args.steps} steps | "
                      f"{r['images_per_s']:.3f} img/s ({r['s_per_image']:.2f} s/img)")  # fmt: skip
        del sampler, comps
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    estimate = None
    if not args.no_estimate:
        from protocol_estimate import estimate_protocol, format_estimate

        spec = args.options.split(",")[0].split("+")
        comps = sd14_components(args.device, dtypes[spec[0]], args.size)
        batch = int(args.batch.split(",")[-1])
        estimate = estimate_protocol(comps, layouts(batch), device=args.device, device_name=device_name,
                                     dtype=dtypes[spec[0]], size=args.size, steps=args.steps,
                                     detector=args.detector)  # fmt: skip
        if not args.json:
            print(format_estimate(estimate))
    if args.json:
        print(json.dumps({"rows": rows, "estimate": estimate} if estimate else rows))


if __name__ == "__main__":
    main()
