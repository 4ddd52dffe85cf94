"""Inpainting: how well the region outside the boxes kept the input image -- PSNR of each image
against the input image the sampler used (``inputs/``), leaving out the boxes it regenerated and a
latent cell around them (what generation recorded in the sample's ``extra["inpaint"]``)."""

from __future__ import annotations

import math
from typing import Any

from gligen_eval.scoring.protocol import KeySpec, ScoreContext, ScoreOutput, Scorer


class InpaintPreservation(Scorer):
    name = "inpaint"
    order = 80
    keys = (KeySpec("inpaint/outside_psnr"),)

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return True  # decided by the samples: only inpainting samples record their inputs

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.errors import InputError
        from gligen_eval.generation.modalities.preservation import outside_psnr
        from gligen_eval.imageio import pil_open

        psnr = []
        for s in ctx.samples:
            rec = s.extra.get("inpaint")
            if not rec:
                continue
            images = []
            for rel in (s.image, rec["input"]):
                try:
                    with pil_open(ctx.rd.root / rel) as im:
                        images.append(im.convert("RGB"))
                except OSError as e:
                    raise InputError(f"cannot read image ({e})", path=str(ctx.rd.root / rel),
                                     record=f"sample {s.sample_key}") from None  # fmt: skip
            psnr.append(outside_psnr(images[0], images[1], [tuple(b) for b in rec["boxes"]], margin=rec["margin"]))
        if not psnr:
            return ScoreOutput()
        finite = [v for v in psnr if math.isfinite(v)]
        self.described["inpaint"] = {"name": "outside-box PSNR", "fingerprint": "outside_psnr-1", "images": len(psnr)}
        return ScoreOutput({"inpaint/outside_psnr": float(sum(finite) / len(finite)) if finite else float("inf")})
