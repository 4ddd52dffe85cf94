"""``extra_detectors``: further detectors side by side with the main one, and how often each agrees
with it on which grounded objects are hits."""

from __future__ import annotations

from typing import Any

from gligen_eval.errors import ConfigError
from gligen_eval.scoring.protocol import KeySpec, ScoreContext, ScoreOutput, Scorer

SIDE_KEYS = ("AP", "AP50", "AP75", "mIoU", "success")


class ExtraDetectors(Scorer):
    name = "extra_detectors"
    order = 20
    keys = (*(KeySpec(f"box@{{}}/{k}") for k in SIDE_KEYS), KeySpec("agreement/{}"))

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return bool(cfg.extra_detectors)

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.detection import check_detector_config
        from gligen_eval.scoring.scorers.box import _is_lvis

        for d in self.cfg.extra_detectors:
            check_detector_config(d, layouts, lvis=_is_lvis(layouts))

    def random_weights(self) -> bool:
        from gligen_eval.scoring.detection import random_detector_weights

        return any(random_detector_weights(d) for d in self.cfg.extra_detectors)

    def run(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring.detection import run_detector_pass

        self.passes = []
        labels: set[str] = set()
        for d in self.cfg.extra_detectors:
            label = d.name or None
            p = run_detector_pass(ctx, "extra", d, list(ctx.samples), [], label=label)
            if p.label in labels:
                raise ConfigError(f"two extra_detectors are both named {p.label!r}; give them distinct 'name' keys")
            labels.add(p.label)
            p.role = f"detector@{p.label}"
            self.passes.append(p)
            self.described[p.role] = p.info

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring.boxes import agreement_rate, evaluate_pass

        main = ctx.shared["box"]
        m: dict[str, Any] = {}
        for p in self.passes:
            ev = evaluate_pass(ctx, p, p.samples)
            xm = ev.metrics(f"box@{p.label}")
            for k in SIDE_KEYS:
                m[f"box@{p.label}/{k}"] = xm[f"box@{p.label}/{k}"]
            m[f"agreement/{p.label}"] = agreement_rate(main.records, ev.records)
        return ScoreOutput(m)
