"""``pose``: OKS AP of a pose model on the images of layouts whose persons carry keypoints, a
per-keypoint breakdown, and the real-image ceiling."""

from __future__ import annotations

import logging
from typing import Any

from gligen_eval import schema
from gligen_eval.scoring.protocol import COCO_KP, KeySpec, ScoreContext, ScoreOutput, Scorer

log = logging.getLogger("gligen_eval")

COCO_KP_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


class PoseScorer(Scorer):
    name = "pose"
    order = 30
    keys = (
        *(KeySpec(f"kp/{k}", section=COCO_KP, coco=True, paired="coco:keypoints", headline=k == "AP",
                  gate=("max_drop", 0.01) if k == "AP" else None) for k in COCO_KP_KEYS),
        KeySpec("kp/real/{}"),
        KeySpec("kp/AP_ratio"),
    )  # fmt: skip

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return cfg.pose is not None

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.detection import check_detector_config

        check_detector_config(self.cfg.pose, layouts, lvis=False, classes=False)

    def random_weights(self) -> bool:
        from gligen_eval.scoring.detection import random_detector_weights

        return random_detector_weights(self.cfg.pose)

    def run(self, ctx: ScoreContext) -> None:
        from gligen_eval.scoring.detection import run_detector_pass
        from gligen_eval.scoring.keypoints import has_keypoints

        kp_layouts = [lay for lay in ctx.layouts if has_keypoints(lay)]
        ids = {lay.layout_id for lay in kp_layouts}
        samples = [s for s in ctx.samples if s.layout_id in ids]
        self.pass_ = None
        if not samples:
            log.warning("a pose model is configured but no layout has persons with keypoints: no kp/ metrics")
            return
        real = kp_layouts if self.cfg.scoring.real_images else []
        self.pass_ = run_detector_pass(ctx, "pose", self.cfg.pose, samples, real, check_classes=False)
        self.described["pose"] = self.pass_.info

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring import intervals
        from gligen_eval.scoring.boxes import ratio
        from gligen_eval.scoring.keypoints import evaluate_keypoints, keypoint_breakdown

        p = self.pass_
        if p is None:
            return ScoreOutput()
        sc = self.cfg.scoring
        cached = ctx.shared["detections"]
        result, gt, results = evaluate_keypoints(ctx.layouts, p.samples, p.detections(cached, p.samples),
                                                 backend=sc.backend)  # fmt: skip
        out = ScoreOutput({f"kp/{k}": v for k, v in result.metrics.items()},
                          {schema.AP_PER_KEYPOINT: keypoint_breakdown(gt, results)})
        n_boot = sc.bootstrap_ap if sc.bootstrap > 0 else 0
        if n_boot:
            out.metrics.update(intervals.ci("kp/AP", intervals.ap_interval(
                gt, results, p.samples, iou_type="keypoints", n_boot=n_boot, alpha=ctx.alpha, seed=ctx.seed)))
        if p.real:
            real_result, _, _ = evaluate_keypoints(ctx.layouts, p.real, p.detections(cached, p.real), backend=sc.backend)
            out.metrics.update({f"kp/real/{k}": v for k, v in real_result.metrics.items()})
            out.metrics["kp/AP_ratio"] = ratio(out.metrics["kp/AP"], out.metrics["kp/real/AP"])
        return out
