"""Spatial modalities (the run's resolved ``modality``: hed, canny, depth, normal, sem): the condition
re-extracted from each image against the layout's input condition, one row per image in
``cond.jsonl`` (:mod:`gligen_eval.scoring.consistency`), and the same on the real images."""

from __future__ import annotations

from typing import Any

from gligen_eval.scoring.protocol import CONDITION, KeySpec, ScoreContext, ScoreOutput, Scorer


def _specs() -> tuple[KeySpec, ...]:
    from gligen_eval.scoring.condition import METRIC_NAMES, WIDE_METRICS, lower_is_better

    out = []
    for real in ("", "real/"):
        for name in METRIC_NAMES:
            key = f"cond/{name}"
            out.append(KeySpec(f"cond/{real}{name}", higher_is_better=not lower_is_better(key),
                               decimals=2 if name in WIDE_METRICS else 3, section=CONDITION,
                               paired=None if real else "pooled"))  # fmt: skip
    return tuple(out)


class ConditionConsistency(Scorer):
    name = "condition"
    order = 60
    rows = "cond.jsonl"
    keys = _specs()

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return True  # decided per run by the resolved modality (see run)

    @classmethod
    def sample_values(cls, run: Any, key: str) -> dict[str, list[float]] | None:
        from gligen_eval.scoring.condition import finite
        from gligen_eval.scoring.consistency import sample_rows

        rows = sample_rows(run.path, run.manifest)
        return {sk: [float(r[key])] if finite(r.get(key)) else [] for sk, r in rows.items()} or None

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring import consistency as cs
        from gligen_eval.scoring.detection import release

        if cs.is_spatial(self.cfg.model.modality):  # named in the config: its extractor must load
            cs.check_extractor(str(self.cfg.model.modality), cs.condition_options(self.cfg.grounding))
            release(device)

    def _pass(self, ctx: ScoreContext, **kw: Any) -> None:
        from gligen_eval.scoring import consistency as cs

        self.rows = cs.cond_missing(ctx.rd, self.items + self.real, ctx.layouts, self.scorer, **kw)

    def run(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring import consistency as cs

        self.scorer = None
        modality = cs.run_modality(ctx.rd, self.cfg)
        if not cs.is_spatial(modality):
            return
        self.scorer = cs.ConditionScorer(str(modality), cs.condition_options(self.cfg.grounding))
        self.described["condition"] = self.scorer.describe()
        self.items, self.real = cs.generated_items(ctx.samples), cs.real_items(ctx.layouts, ctx.samples)
        self._pass(ctx, dist=ctx.dist, progress=ctx.progress)

    def merge(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring import consistency as cs

        if self.scorer is not None:
            ctx.rd.merge_rank_rows(cs.COND_ROWS, ("key", "scorer"))
            self._pass(ctx, progress=False)

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring.consistency import condition_metrics

        if self.scorer is None:
            return ScoreOutput()
        return ScoreOutput(condition_metrics(self.rows, self.scorer, self.items, self.real, n_boot=ctx.n_boot,
                                             alpha=ctx.alpha, seed=ctx.seed))  # fmt: skip
