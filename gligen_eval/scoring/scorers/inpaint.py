"""Inpainting: how well the region outside the boxes kept the input image (the PSNR each inpainting
sample recorded when it was generated)."""

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
        return True  # decided by the samples: only inpainting samples carry the value

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        psnr = [s.extra["outside_psnr"] for s in ctx.samples if s.extra.get("outside_psnr") is not None]
        if not psnr:
            return ScoreOutput()
        finite = [v for v in psnr if math.isfinite(v)]
        return ScoreOutput({"inpaint/outside_psnr": float(sum(finite) / len(finite)) if finite else float("inf")})
