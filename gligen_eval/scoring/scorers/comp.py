"""``comp``: counts, spatial relations and colours of the grounded objects on the main detector's
cached detections, COCO-MIG with ``comp.mig`` (:mod:`gligen_eval.scoring.compositional`); one row
per image in ``comp.jsonl``."""

from __future__ import annotations

import dataclasses
from typing import Any

from gligen_eval.scoring.protocol import COMPOSITION, KeySpec, ScoreContext, ScoreOutput, Scorer


def _specs() -> tuple[KeySpec, ...]:
    from gligen_eval.scoring.compositional import COMP_KEYS, MIG_KEYS

    pooled = ("comp/count_acc", "comp/relation_acc", "comp/color_acc_hsv", "comp/color_acc_clip",
              "comp/texture_acc_clip", "mig/ISR", "mig/mIoU")  # what compositional.layout_values pools
    return tuple(KeySpec(k, section=COMPOSITION, paired="pooled" if k in pooled else None) for k in (*COMP_KEYS, *MIG_KEYS))


class CompositionScorer(Scorer):
    name = "comp"
    order = 70
    rows = "comp.jsonl"
    keys = _specs()

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return cfg.comp.enabled

    @classmethod
    def sample_values(cls, run: Any, key: str) -> dict[str, list[float]] | None:
        """The per-image 0/1 (or IoU) values of ``comp.jsonl`` behind a pooled ``comp/`` or ``mig/`` key."""
        from gligen_eval import store
        from gligen_eval.scoring.compositional import COMP_ROWS, layout_values

        path = run.path / COMP_ROWS
        if not path.is_file():
            return None
        out: dict[str, list[float]] = {}
        for row in store.iter_jsonl(path):
            out[row["sample_key"]] = [v for vs in layout_values([row]).get(key, {}).values() for v in vs]
        return out

    def _clip_model(self) -> str | None:
        c = self.cfg.comp
        return (c.clip_model or self.cfg.clip.model) if c.clip else None

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.clip import check_local_pretrained

        model = self._clip_model()
        if model is not None and model != "tiny":
            check_local_pretrained(model, "CLIP model of the colour check")

    def random_weights(self) -> bool:
        return self._clip_model() == "tiny"

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval import store
        from gligen_eval.config import comp_options
        from gligen_eval.scoring import compositional as comp
        from gligen_eval.scoring.boxes import relabel_phrases

        p, ev = ctx.shared["box_pass"], ctx.shared["box"]
        detections = p.detections(ctx.shared["detections"], p.samples)
        if p.takes_phrases:
            by_id = ctx.by_id
            detections = {s.sample_key: relabel_phrases(detections[s.sample_key], by_id[s.layout_id]) for s in p.samples}
        options = comp_options(self.cfg)
        clip = self._clip(ctx)
        judge = comp.ClipColorJudge(clip, options.colors) if clip is not None else None
        out, rows = comp.score_compositional(ctx.rd.root, ctx.layouts, p.samples, detections, ev.records, options,
                                             judge=judge)  # fmt: skip
        store.write_jsonl(ctx.rd.path(comp.COMP_ROWS), rows)
        if ctx.n_boot:
            out.update(comp.intervals(rows, list(out), n_boot=ctx.n_boot, alpha=ctx.alpha, seed=ctx.seed))
        self.described["comp"] = {"detector": p.info["fingerprint"], "clip": judge.fingerprint() if judge else None,
                     **dataclasses.asdict(options)}  # fmt: skip
        return ScoreOutput(out)

    def _clip(self, ctx: ScoreContext) -> Any:
        """The CLIP model of the colour check: the run's CLIP scorer when it is the same model."""
        model = self._clip_model()
        if model is None:
            return None
        shared = ctx.shared.get("clip_model")
        if shared is not None and shared[0] == model:
            return shared[1]
        from gligen_eval.scoring.clip_pass import build_clip_scorer

        return build_clip_scorer(dataclasses.replace(self.cfg.clip, model=model), device=ctx.device)
