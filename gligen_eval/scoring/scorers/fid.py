"""``fid``: FID and KID of the run's images against real images (the counts and the KID subset
size go to ``breakdowns.json``)."""

from __future__ import annotations

from typing import Any

from gligen_eval import schema
from gligen_eval.scoring.protocol import QUALITY, KeySpec, ScoreContext, ScoreOutput, Scorer

FID_KEYS = ("fid", "kid", "kid/std")


class FidScorer(Scorer):
    name = "fid"
    order = 40
    keys = (
        KeySpec("fid", higher_is_better=False, decimals=2, section=QUALITY, headline=True, gate=("max_rise", 0.5)),
        KeySpec("kid", higher_is_better=False, decimals=4, section=QUALITY),
        KeySpec("kid/std", higher_is_better=False, decimals=4),
    )

    @classmethod
    def configured(cls, cfg: Any) -> bool:
        return cfg.fid.enabled

    def check(self, layouts, *, device: str) -> None:
        from gligen_eval.scoring.fid_pass import fid_reference_images

        fid = self.cfg.fid
        if layouts is not None:
            fid_reference_images(fid, layouts)
        if fid.feature != "tiny":
            from gligen_eval.safeload import check_pickle, safetensors_keys
            from gligen_eval.scoring.quality import inception_weights_file

            path = inception_weights_file(fid.inception_weights)
            safetensors_keys(path) if path.suffix == ".safetensors" else check_pickle(path)

    def random_weights(self) -> bool:
        return self.cfg.fid.feature == "tiny"

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        from gligen_eval.scoring.fid_pass import score_fid

        values, self.described["fid"] = score_fid(ctx.rd, self.cfg.fid, ctx.layouts, ctx.samples, device=ctx.device)
        return ScoreOutput({k: values[k] for k in FID_KEYS if k in values},
                           {schema.FID_DETAILS: {k: v for k, v in values.items() if k not in FID_KEYS}})
