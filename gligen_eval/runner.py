"""Run a :class:`~gligen_eval.config.RunConfig` end to end.

layouts → requests (layout × seed × sampler settings) → batched generation → detector →
per-instance records + COCO AP → ``metrics.json`` and a short report, all in one run directory.

Images and detections are content-addressed: a rerun of a finished run generates nothing,
adding a detector reuses every image, and changing one sampler setting regenerates only what
that setting affects. An interrupted run continues with ``resume=True``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gligen_eval import schema, store
from gligen_eval.config import RunConfig
from gligen_eval.devices import resolve_device
from gligen_eval.errors import GligenEvalError
from gligen_eval.records import Layout, SampleRecord, stable_hash
from gligen_eval.writer import BatchWriter, PendingImage

log = logging.getLogger("gligen_eval")

SEED_POLICY = (
    "seed = int(sha256([sampler.base_seed, layout_id, k])[:8], 16) % 2**31 for k in range(sampler.seeds_per_layout); "
    "each image's initial noise comes from its own torch.Generator seeded with it"
)


@dataclass(frozen=True)
class Request:
    layout: Layout
    seed: int
    sample_key: str


def sample_seed(base_seed: int, layout_id: str, k: int) -> int:
    return int(stable_hash([base_seed, layout_id, k], length=8), 16) % (2**31)


def settings_for_key(cfg: RunConfig, *, alpha: Sequence[float] | None = None,
                     grounding: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The settings that change pixels (batch size does not: noise is per sample).

    ``alpha`` is the effective schedule (the modality's default when the config leaves it unset) and
    ``grounding`` the grounding tokenizer's description (modality and image options).
    """
    s = cfg.sampler
    d = {
        "steps": s.steps, "guidance_scale": s.guidance_scale, "height": s.height, "width": s.width,
        "scheduler": s.scheduler, "schedule": s.schedule, "negative_prompt": s.negative_prompt,
        "max_objects": s.max_objects, "dtype": cfg.model.dtype, "attention": cfg.model.attention,
        "channels_last": cfg.model.channels_last, "compile": cfg.model.compile, "grounding": grounding or {},
    }  # fmt: skip
    if s.schedule == "alpha":
        d["alpha"] = list(alpha if alpha is not None else s.alpha or [])
    else:
        d["beta"] = s.beta
    return d


def _file_stamp(path: str | None) -> list[Any] | None:
    """Name, size and modification time of a file the images depend on (inpainting inputs, crops)."""
    if not path:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]


def make_requests(layouts: Sequence[Layout], cfg: RunConfig, model_fingerprint: str,
                  settings: dict[str, Any] | None = None) -> list[Request]:  # fmt: skip
    settings = settings if settings is not None else settings_for_key(cfg)
    settings_hash = stable_hash(settings)
    g = settings.get("grounding") or {}
    uses_layout_image = g.get("input_images") == "layout" or g.get("reference_images") == "crop"
    out = []
    for layout in layouts:
        lh = layout.content_hash()
        if uses_layout_image:
            lh = stable_hash([lh, _file_stamp(layout.image_path)])
        for k in range(cfg.sampler.seeds_per_layout):
            seed = sample_seed(cfg.sampler.base_seed, layout.layout_id, k)
            key = stable_hash([model_fingerprint, lh, seed, settings_hash], length=20)
            out.append(Request(layout, seed, key))
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    pkgs = ["gligen-eval", "torch", "torchvision", "diffusers", "transformers", "ultralytics", "torchmetrics",
            "pycocotools", "faster-coco-eval", "numpy", "pandas", "pillow"]  # fmt: skip
    out = {"python": sys.version.split()[0]}
    for p in pkgs:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_info() -> dict[str, Any]:
    import subprocess

    here = Path(__file__).resolve().parent.parent
    try:
        h = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if h.returncode != 0:
            return {"hash": None, "dirty": None}
        d = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5)  # fmt: skip
        return {"hash": h.stdout.strip(), "dirty": bool(d.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"hash": None, "dirty": None}


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / cfg.name


def load_run_layouts(cfg: RunConfig) -> list[Layout]:
    from gligen_eval.layouts import load_layouts

    lc = cfg.layouts
    return load_layouts(
        lc.source, captions=lc.captions, limit=lc.limit, seed=lc.seed, max_objects=lc.max_objects,
        min_area=lc.min_area, skip_crowd=lc.skip_crowd, images_dir=lc.images_dir,
    )  # fmt: skip


def run(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run ``cfg``; returns the run directory (for a τ sweep, the folder holding one run per τ).

    Under ``torchrun``/``accelerate launch`` every rank calls this; each generates and detects its
    share of the chunks, and rank 0 merges the records and scores.
    """
    from gligen_eval.config import validate

    validate(cfg)  # a bad config creates no run directory
    with writer_lock(cfg):
        if cfg.sweep.tau:
            return run_sweep(cfg, resume=resume, progress=progress)
        return _run_single(cfg, resume=resume, progress=progress)


def config_hash_of(cfg: RunConfig) -> str:
    return stable_hash(cfg.to_dict())


def writer_lock(cfg: RunConfig):
    """The run directory's writer lock (:mod:`gligen_eval.runlock`), held by the main process only: under
    ``torchrun`` rank 0 holds it for the whole job (a rank that fails makes the launcher stop the others)."""
    import contextlib

    from gligen_eval import distributed

    if not distributed.env_world().is_main:
        return contextlib.nullcontext()
    return store.RunDir(run_dir_for(cfg)).lock(config_hash_of(cfg))


def sweep_points(cfg: RunConfig) -> list[tuple[float, RunConfig]]:
    """One config per τ of ``cfg.sweep``: same layouts, seeds and everything else, in ``<out>/tau-<τ>``."""
    import copy

    root = run_dir_for(cfg)
    out = []
    for tau in cfg.sweep.tau:
        sub = copy.deepcopy(cfg)
        sub.sweep.tau = []
        if sub.sampler.schedule == "alpha":
            sub.sampler.alpha = [float(tau), 0.0, 1.0 - float(tau)]
        else:
            sub.sampler.beta = float(tau)
        sub.name = f"{cfg.name}-tau{tau:g}"
        sub.out = str(root / f"tau-{tau:g}")
        out.append((float(tau), sub))
    return out


SWEEP_INDEX = "sweep.json"


def run_sweep(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run every τ of the sweep (the model is loaded once) and write ``sweep.json`` beside the runs.

    Each τ is an ordinary run in its own folder; their images are generated as a tree
    (:mod:`gligen_eval.sweep_tree`) that runs the steps the τ share once."""
    from gligen_eval import distributed

    from gligen_eval.sweep_tree import SweepTree

    root = run_dir_for(cfg)
    cache: dict[Any, Any] = {}
    points = []
    tree = SweepTree(root, sweep_points(cfg))  # the steps the τ share are generated once
    for k, p in enumerate(tree.points):
        with writer_lock(p.cfg):
            out = _run_single(p.cfg, resume=resume, progress=progress, components_cache=cache,
                              wrap_sampler=tree.wrapper(k))  # fmt: skip
        if distributed.env_world().is_main:
            tree.done_with(k)
        points.append({"tau": p.tau, "run": out.name, "metrics": _read_metrics(out)})
    if distributed.env_world().is_main:
        parameter = "sampler.alpha = [tau, 0, 1 - tau]" if cfg.sampler.schedule == "alpha" else "sampler.beta = tau"
        store.atomic_write_json(root / SWEEP_INDEX, {"name": cfg.name, "parameter": parameter, "points": points})
        from gligen_eval.reporting import run_summary

        store.atomic_write_text(root / "sweep.md", run_summary.render_sweep(cfg.name, parameter, points))
    return root


def _read_metrics(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / store.METRICS
    return store.read_json(p) if p.exists() else None


def _run_single(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
                components_cache: dict[Any, Any] | None = None, wrap_sampler=None) -> Path:  # fmt: skip
    """One run. The generator is built only when an image is missing or damaged; when the manifest's
    record of it no longer matches its build (:class:`~gligen_eval.lazygen.StaleRecord`), the run
    starts again from a fresh build."""
    from gligen_eval.lazygen import StaleRecord

    try:
        return _run_single_once(cfg, resume=resume, progress=progress, components_cache=components_cache,
                                wrap_sampler=wrap_sampler)  # fmt: skip
    except StaleRecord as e:
        log.warning("%s; keying the images by the built model", e)
        built, e.built = [e.built], None  # the second try takes the first's build (and drops it before scoring)
        return _run_single_once(cfg, resume=True, progress=progress, components_cache=components_cache,
                                use_record=False, prebuilt=built, wrap_sampler=wrap_sampler)  # fmt: skip


def _run_single_once(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
                     components_cache: dict[Any, Any] | None = None, use_record: bool = True,
                     prebuilt: list[Any] | None = None, wrap_sampler=None) -> Path:  # fmt: skip
    from gligen_eval import distributed, lazygen
    from gligen_eval.config import validate

    validate(cfg)
    rd = store.RunDir(run_dir_for(cfg))
    config_hash = stable_hash(cfg.to_dict())
    device = resolve_device(cfg.device if cfg.model.device == "auto" else cfg.model.device)
    dist = distributed.init(device)
    device = distributed.local_device(device, dist)
    progress = progress and dist.is_main
    if dist.is_main:
        _check_existing(rd, cfg, resume)
        store.ensure_dir(rd.root)
    distributed.barrier(dist)

    layouts = load_run_layouts(cfg)
    if not layouts:
        raise GligenEvalError(f"no layouts selected from {cfg.layouts.source!r}")
    from gligen_eval.scoring.pipeline import preflight

    preflight(cfg, device=device, layouts=layouts)  # missing scoring weights/images fail now, not after generation

    stamp = distributed.broadcast_object(dist, lazygen.generator_stamp(cfg) if dist.is_main else None)
    gen = prebuilt.pop() if prebuilt else None
    if gen is None and use_record and not dist.enabled and rd.exists():
        # a finished run's generator, known without building it (one process: a stale record restarts the run)
        gen = lazygen.recorded_generator(_manifest_or_none(rd), stamp)
    if gen is None:
        gen = lazygen.load_generator(cfg, device=device, stamp=stamp, cache=components_cache)
    gen_info, model_fp = gen.entry, gen.fingerprint
    sampler = lazygen.LazySampler(lazygen.sampler_factory(gen, cfg, device=device, cache=components_cache))
    from gligen_eval.generation.modalities import default_alpha

    if wrap_sampler is not None:  # a τ sweep: generate the later τ alongside (building the model only if needed)
        sampler = wrap_sampler(sampler, model_fp)
    modality = gen.grounding["modality"]
    alpha = list(cfg.sampler.alpha) if cfg.sampler.alpha is not None else default_alpha(modality)
    sampler_cfg = dataclasses.replace(cfg.sampler, alpha=alpha)
    settings = settings_for_key(cfg, alpha=alpha, grounding=gen.grounding)
    requests = make_requests(layouts, cfg, model_fp, settings)
    if distributed.broadcast_object(dist, rd.exists()):  # decode every cached image: damaged ones are made
        # again before anything else changes, while the old metrics still stand
        generate_missing(rd, requests, sampler, sampler_cfg, settings, dist=dist, progress=progress, repair=True)
        distributed.barrier(dist)

    manifest: schema.Manifest = {
        "schema_version": store.SCHEMA_VERSION,
        "name": cfg.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "config_hash": config_hash,
        "generation_hash": generation_hash(cfg.to_dict()),
        "resolved": {"modality": modality, "sampler": {"alpha": alpha}, "generation_settings": settings,
                     lazygen.RECORD_KEY: gen.record()},  # fmt: skip
        "versions": _versions(),
        "git": _git_info(),
        "argv": sys.argv,
        "device": device,
        "world_size": dist.world_size,
        "models": {
            "generator": dict(gen_info),
        },
        "layouts": {"source": cfg.layouts.source, "count": len(layouts),
                    "hash": stable_hash([lay.content_hash() for lay in layouts])},
        "seed_policy": SEED_POLICY,
        "random_weights": _uses_random_weights(cfg),
    }  # fmt: skip
    if dist.is_main:
        if rd.exists():
            old = rd.manifest()
            manifest["created"] = old.get("created", manifest["created"])
            old_fp = ((old.get("models") or {}).get("generator") or {}).get("fingerprint")
            if old.get("config_hash") != config_hash or old_fp != model_fp:
                # the old metrics no longer match the manifest: until this run's scoring ends, the run is unfinished
                for name in (store.METRICS, store.REPORT):
                    rd.path(name).unlink(missing_ok=True)
        store.atomic_write_json(rd.path(store.MANIFEST), manifest)
        store.write_jsonl(rd.path(store.LAYOUTS), (lay.to_dict() for lay in layouts))

    samples = generate_missing(rd, requests, sampler, sampler_cfg, settings, dist=dist, progress=progress)
    log.info("generator %s", "built" if gen.components is not None else "not built: nothing to generate")
    del sampler, gen
    if dist.enabled:  # every rank needs every sample record to cut the same detection chunks
        distributed.barrier(dist)
        existing = _existing_samples(rd)
        samples = [existing[r.sample_key] for r in requests]
        distributed.barrier(dist)  # every rank has read the rank files before rank 0 folds and deletes them
    if dist.is_main:  # one row per image of this run, in request order (no rows of regenerated batches twice)
        _merge_rank_samples(rd, samples)
    distributed.barrier(dist)

    from gligen_eval.scoring.pipeline import score_run

    metrics, scorers = score_run(rd, cfg, layouts, samples, device=device, dist=dist, progress=progress)
    if dist.is_main:
        manifest["models"].update(scorers)
        store.atomic_write_json(rd.path(store.MANIFEST), manifest)
        from gligen_eval.reporting import run_summary

        store.atomic_write_text(rd.path(store.REPORT), run_summary.render_summary(manifest, metrics))
    distributed.barrier(dist)
    return rd.root


def _manifest_or_none(rd: store.RunDir) -> dict[str, Any] | None:
    try:
        return rd.manifest()
    except (OSError, ValueError):
        return None


def generation_hash(config: dict[str, Any]) -> str:
    """Hash of the parts of a config that decide the images (everything but the scoring sections)."""
    from gligen_eval.config import SCORING_SECTIONS

    kept = {k: v for k, v in config.items() if k not in SCORING_SECTIONS and k not in ("name", "out")}
    if isinstance(kept.get("sampler"), dict):  # how images are written does not change them
        kept["sampler"] = {k: v for k, v in kept["sampler"].items() if k not in NOT_GENERATION_KEYS}
    return stable_hash(kept)


NOT_GENERATION_KEYS = ("write_overlap",)
"""``sampler`` keys that change how a run goes but not its images."""


def _check_existing(rd: store.RunDir, cfg: RunConfig, resume: bool) -> None:
    """An unfinished run needs ``--resume``; a finished one may be rerun with other settings (the image
    cache keeps whatever still applies)."""
    if not rd.exists():
        return
    from gligen_eval.config import config_from_dict
    from gligen_eval.errors import ConfigError, InputError

    where = str(rd.path(store.MANIFEST))
    try:
        old = rd.manifest()
    except (OSError, ValueError) as e:
        raise InputError(f"not a readable run manifest ({e}); choose another --out", path=where) from None
    if not isinstance(old, dict):
        raise InputError("not a run manifest (not a JSON object); choose another --out", path=where)

    try:  # read the old config through today's schema: keys added since then take their defaults
        old_config = config_from_dict(old.get("config", {})).to_dict()
    except ConfigError:
        old_config = old.get("config", {})
    mine, theirs = generation_hash(cfg.to_dict()), generation_hash(old_config)
    if not rd.is_complete() and not resume:
        raise GligenEvalError(f"{rd.root} holds an unfinished run; pass --resume to finish it")
    if mine != theirs:
        # Images are content-addressed: those whose key (model, layout, seed, settings) is unchanged are
        # reused, the others generated; samples.jsonl and the metrics describe the new settings.
        changed = sorted(k for k in ("layouts", "model", "sampler", "grounding", "sweep")
                         if cfg.to_dict().get(k) != old_config.get(k))  # fmt: skip
        log.warning("%s: generation settings changed (%s); images whose content key is unchanged are reused",
                    rd.root, ", ".join(changed) or "config")  # fmt: skip


def _uses_random_weights(cfg: RunConfig) -> bool:
    from gligen_eval.scoring.pipeline import uses_random_scoring_weights

    return cfg.model.name == "tiny" or uses_random_scoring_weights(cfg)


def _existing_samples(rd: store.RunDir) -> dict[str, SampleRecord]:
    out = {}
    for f in rd.record_files(store.SAMPLES):
        for s in store.iter_jsonl(f, SampleRecord.from_dict, partial_tail="skip"):  # the merge rewrites the file
            out[s.sample_key] = s
    return out


def _cached_image_ok(rd: store.RunDir, req: Request, existing: dict[str, SampleRecord], repair: bool) -> bool:
    """Whether a request needs no generation. ``repair``: only rows with a damaged image need it."""
    path = rd.image_path(req.sample_key)
    if not repair:
        return req.sample_key in existing and store.is_complete_png(path)
    if req.sample_key not in existing:
        return True  # no row yet: the generation pass makes it
    problem = store.png_problem(path)
    if problem is not None:
        log.warning("%s: cached image %s; generating it again", path, problem)
    return problem is None


def _merge_rank_samples(rd: store.RunDir, samples: list[SampleRecord]) -> None:
    """Rewrite ``samples.jsonl`` as exactly ``samples`` and delete the per-rank parts (also those an
    interrupted distributed run left behind for a one-process resume)."""
    rd.replace_records(store.SAMPLES, (s.to_dict() for s in samples))


def generate_missing(rd: store.RunDir, requests: list[Request], sampler, sampler_cfg, settings: dict[str, Any], *,
                     dist=None, progress: bool = True, repair: bool = False) -> list[SampleRecord]:  # fmt: skip
    """Generate the images that are not in the run directory yet; returns SampleRecords in request order.

    Requests are cut into fixed batches in request order; a batch with any image missing or damaged
    is generated whole, so every image always comes from the same batch (bit-identical reruns), but
    only the missing images are written: images already in the run keep their files.
    ``repair=True`` handles only the images that have a sample row, and decodes each of them
    (:func:`~gligen_eval.store.png_problem`): any damaged one is made again. Otherwise an image with
    a row counts as done when it is a complete PNG (the cheap check).
    Inpainting samples record the PSNR of the region outside their boxes against the input image.
    The PNGs and rows are written by :class:`~gligen_eval.writer.BatchWriter` while the next batch
    generates (``sampler.write_overlap``); a batch's rows are appended once all its files are written.
    """
    from gligen_eval import distributed
    from gligen_eval.chunks import process_missing

    dist = dist or distributed.DistInfo()
    existing = _existing_samples(rd)
    settings_hash = stable_hash(settings)
    extra = _schedule_extra(sampler_cfg, settings)
    verdict: dict[str, bool] = {}

    def done(req: Request) -> bool:
        if req.sample_key not in verdict:
            verdict[req.sample_key] = _cached_image_ok(rd, req, existing, repair)
        return verdict[req.sample_key]

    out_file = rd.rank_file(store.SAMPLES, dist.rank if dist.enabled else None)

    def record_for(req: Request):
        def build(img) -> SampleRecord:  # runs on the writer thread, after the image file is written
            return SampleRecord(
                sample_key=req.sample_key, layout_id=req.layout.layout_id, seed=req.seed,
                image=rd.image_relpath(req.sample_key), width=img.width, height=img.height,
                layout_hash=req.layout.content_hash(), settings_hash=settings_hash,
                extra={**extra, **_inpaint_inputs(rd, sampler, req.layout, img, sampler_cfg, settings_hash)},
            )  # fmt: skip

        return build

    overlap = getattr(sampler_cfg, "write_overlap", True)
    with BatchWriter(out_file, overlap=overlap) as writer:

        def process(batch: Sequence[Request]) -> None:
            images = sampler.generate([r.layout for r in batch], [r.seed for r in batch], sampler_cfg, progress=False)
            writer.submit([PendingImage(rd.image_path(req.sample_key), img, record_for(req))
                           for req, img in zip(batch, images) if not done(req)])  # fmt: skip

        process_missing(requests, is_done=done, process=process, chunk_size=sampler_cfg.batch_size, dist=dist,
                        progress=progress, desc="generate")  # fmt: skip
        new = writer.close()
    log.info("generated %d images, reused %d", len(new), len(requests) - len(new))
    merged = {**existing, **new}
    return [merged[r.sample_key] for r in requests if r.sample_key in merged]


def _inpaint_inputs(rd: store.RunDir, sampler, layout: Layout, image, sampler_cfg, settings_hash: str) -> dict[str, Any]:
    """Inpainting: what the preservation scorer needs, recorded as the sampler used it -- the input
    image fitted to the output size (saved once per layout and size under ``inputs/``), the boxes it
    regenerated and the latent cell size left out around them."""
    from gligen_eval.generation.modalities import MODALITIES

    grounding = sampler.grounding
    spec = MODALITIES.get(grounding.describe()["modality"])
    if not (spec.inpainting if spec is not None else hasattr(grounding, "input_image")):
        return {}
    from gligen_eval.writer import encode_png

    rel = f"{store.INPUTS}/{stable_hash([layout.content_hash(), image.width, image.height, settings_hash])}.png"
    if not rd.path(rel).is_file():
        store.atomic_write_bytes(rd.path(rel), encode_png(grounding.input_image(layout, image.width, image.height)))
    boxes = grounding.grounded_boxes(layout, sampler_cfg.max_objects)
    return {"inpaint": {"input": rel, "boxes": [list(b) for b in boxes], "margin": int(sampler.vae_scale_factor)}}


def _schedule_extra(sampler_cfg, settings: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {"schedule": sampler_cfg.schedule, "modality": (settings.get("grounding") or {}).get("modality")}
    if sampler_cfg.schedule == "alpha":
        d["alpha"] = list(sampler_cfg.alpha)
    else:
        d["beta"] = sampler_cfg.beta
    return d


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)
