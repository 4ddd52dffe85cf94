"""``quality``: image quality beyond FID against the same real images -- FD-DINOv2, CMMD,
precision/recall/density/coverage and PickScore (:mod:`gligen_eval.scoring.quality_modern`)."""

from __future__ import annotations

from typing import Any

from gligen_eval.scoring.protocol import QUALITY, KeySpec, ScoreContext, ScoreOutput, Scorer


class QualityScorer(Scorer):
    name = "quality"
    order = 45
    keys = (
        KeySpec("fd_dinov2", higher_is_better=False, decimals=2, section=QUALITY),
        KeySpec("cmmd", higher_is_better=False, section=QUALITY),
        *(KeySpec(f"prdc/{k}", section=QUALITY) for k in ("precision", "recall", "density", "coverage")),
        KeySpec("pref/pickscore", decimals=2, section=QUALITY),
    )

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        from gligen_eval.scoring.quality_modern import enabled

        return enabled(cfg.quality)

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring import quality_modern
        from gligen_eval.scoring.fid_pass import fid_reference_images

        q = self.cfg.quality
        if layouts is not None and (q.fd_dinov2.enabled or q.cmmd.enabled or q.prdc.enabled):
            n_real = len(fid_reference_images(self.cfg.fid, layouts)[0])
            quality_modern.check_counts(q, n_real, len(layouts) * self.cfg.sampler.seeds_per_layout)
        quality_modern.check_weights(q)

    def random_weights(self) -> bool:
        from gligen_eval.scoring.quality_modern import uses_random_weights

        return uses_random_weights(self.cfg.quality)

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring.quality_modern import score_quality

        values, self.described["quality"] = score_quality(ctx.rd, self.cfg, ctx.layouts, ctx.samples, device=ctx.device)
        return ScoreOutput(values)
