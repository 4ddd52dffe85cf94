"""``detector``: COCO (or LVIS-style) box AP of the main detector against the layout boxes, the
per-instance rows (``instances.jsonl``), the real-image ceiling, TIDE-style error analysis and the
intervals over layouts."""

from __future__ import annotations

from typing import Any

from gligen_eval import schema
from gligen_eval.scoring.protocol import COCO_BOX, INSTANCE, KeySpec, ScoreContext, ScoreOutput, Scorer

COCO_BOX_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
                 "APr", "APc", "APf")  # fmt: skip
TIDE_ERRORS = ("cls", "loc", "both", "dupl", "bkg", "miss")


def _coco_spec(name: str) -> KeySpec:
    return KeySpec(f"box/{name}", section=COCO_BOX, coco=True, paired="coco:bbox", headline=name in ("AP", "AP50"),
                   gate=("max_drop", 0.01) if name == "AP" else None)  # fmt: skip


class BoxScorer(Scorer):
    name = "detector"
    order = 10
    rows = "instances.jsonl"
    keys = (
        *(_coco_spec(k) for k in COCO_BOX_KEYS),
        KeySpec("box/AR{}", section=COCO_BOX, coco=True, paired="coco:bbox"),  # other maxDets
        KeySpec("box/mIoU", section=INSTANCE, headline=True, gate=("max_drop", 0.01), paired="pooled"),
        KeySpec("box/success", section=INSTANCE, headline=True, gate=("max_drop", 0.01), paired="pooled"),
        *(KeySpec(f"box/tide/{e}", higher_is_better=False) for e in TIDE_ERRORS),  # AP lost to one error type
        KeySpec("box/AP_iou_auc"),
        KeySpec("box/real/{}"),
        KeySpec("box/AP_ratio"),
    )

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return True

    @classmethod
    def sample_values(cls, run: Any, key: str) -> dict[str, list[float]] | None:
        field = {"box/mIoU": "best_iou", "box/success": "hit"}.get(key)
        if field is None or not run.instances:
            return None
        out: dict[str, list[float]] = {}
        for inst in run.instances:
            out.setdefault(inst.sample_key, []).append(float(getattr(inst, field)))
        return out

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.detection import check_detector_config

        check_detector_config(self.cfg.detector, layouts, lvis=_is_lvis(layouts))
        if layouts is not None and self.cfg.scoring.real_images:
            from gligen_eval.scoring.realimages import real_image_path

            for lay in layouts:
                real_image_path(lay)

    def random_weights(self) -> bool:
        from gligen_eval.scoring.detection import random_detector_weights

        return random_detector_weights(self.cfg.detector)

    def run(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring.detection import run_detector_pass

        real = list(ctx.layouts) if self.cfg.scoring.real_images else []
        self.pass_ = run_detector_pass(ctx, "detector", self.cfg.detector, list(ctx.samples), real)
        self.described["detector"] = self.pass_.info

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring import intervals
        from gligen_eval.scoring.boxes import evaluate_pass, per_category_instances, ratio

        sc, p = self.cfg.scoring, self.pass_
        ev = evaluate_pass(ctx, p, p.samples)
        ctx.shared["box"] = ev
        ctx.shared["box_pass"] = p
        out = ScoreOutput(ev.metrics("box"), {schema.AP_PER_CATEGORY: ev.result.per_category,
                                              schema.INSTANCES_PER_CATEGORY: per_category_instances(ev.records)})
        m = out.metrics
        if sc.error_analysis and not ev.lvis:
            from gligen_eval.scoring.errors import error_metrics

            err_metrics, err_breakdowns = error_metrics(ev.gt, ev.results, prefix="box",
                                                        confusion_min_score=sc.instance_min_score)
            m.update(err_metrics)
            out.breakdowns.update(err_breakdowns)
        n_boot_ap = sc.bootstrap_ap if sc.bootstrap > 0 else 0
        if n_boot_ap:
            m.update(intervals.ci("box/AP", intervals.ap_interval(ev.gt, ev.results, ev.samples, lvis_style=ev.lvis,
                                                                  n_boot=n_boot_ap, alpha=ctx.alpha, seed=ctx.seed)))
        if ctx.n_boot:
            m.update(intervals.instance_intervals("box", ev.records, ctx.layouts, n_boot=ctx.n_boot, alpha=ctx.alpha,
                                                  seed=ctx.seed))  # fmt: skip
        if p.real:
            real_ev = evaluate_pass(ctx, p, p.real)
            m.update(real_ev.metrics("box/real"))
            m["box/AP_ratio"] = ratio(m["box/AP"], m["box/real/AP"])
            out.breakdowns[schema.REAL_AP_PER_CATEGORY] = real_ev.result.per_category
        return out



def _is_lvis(layouts: Any) -> bool:
    from gligen_eval.scoring.coco import lvis_style_of

    return layouts is not None and lvis_style_of(layouts)
