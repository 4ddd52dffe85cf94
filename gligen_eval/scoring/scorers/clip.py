"""``clip``: CLIP scores of every image (global caption, regional phrases, reference images), one
row per image in ``clip.jsonl``; the model stays shared for the colour check of ``comp``."""

from __future__ import annotations

from typing import Any

from gligen_eval.scoring.protocol import QUALITY, KeySpec, ScoreContext, ScoreOutput, Scorer


class ClipPass(Scorer):
    name = "clip"
    order = 50
    keys = (
        KeySpec("clip/global", section=QUALITY, headline=True),
        KeySpec("clip/regional", section=QUALITY),
        KeySpec("clip/image"),
    )

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return cfg.clip.enabled

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.clip import check_local_pretrained

        if self.cfg.clip.model != "tiny":
            check_local_pretrained(self.cfg.clip.model, "CLIP model")

    def random_weights(self) -> bool:
        return self.cfg.clip.model == "tiny"

    def _pass(self, ctx: ScoreContext, **kw: Any) -> dict[str, Any]:
        from gligen_eval.scoring.clip_pass import clip_missing

        return clip_missing(ctx.rd, ctx.samples, ctx.layouts, self.model, batch_size=self.cfg.clip.batch_size, **kw)

    def run(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring.clip_pass import build_clip_scorer

        self.model = m = build_clip_scorer(self.cfg.clip, device=ctx.device)
        self.described["clip"] = {"name": m.name, "fingerprint": m.fingerprint(), "weight": m.weight, "crop": m.crop}
        self.scores = self._pass(ctx, dist=ctx.dist, progress=ctx.progress)

    def merge(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring.clip_pass import CLIP_ROWS

        ctx.rd.merge_rank_rows(CLIP_ROWS, ("sample_key", "scorer"))
        self.scores = self._pass(ctx, progress=False)

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring.clip import clip_metrics

        ctx.shared["clip_model"] = (self.cfg.clip.model, self.model)
        per_layout: dict[str, list] = {}
        for s in ctx.samples:
            per_layout.setdefault(s.layout_id, []).append(self.scores[s.sample_key])
        n_boot = ctx.n_boot
        return ScoreOutput(clip_metrics(per_layout, ci=n_boot > 0, n_boot=max(n_boot, 1), alpha=ctx.alpha,
                                        seed=ctx.seed))  # fmt: skip
