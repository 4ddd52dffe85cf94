"""The ``gligen-eval`` command line.

User errors (bad input, missing weights, bad config) and OS errors (read-only or full disk,
permissions) print one line to stderr naming the path and exit 2, without a traceback. ``--json``
writes exactly one JSON object to stdout and nothing else, on failure too:
``{"error": "<the line>", "path": "<the file or null>"}``. A closed stdout (``| head``) ends the
command quietly with status 141.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from gligen_eval.errors import GligenEvalError

REAL_RUN_HINT = (
    "To run a real checkpoint, change one line -- the model -- on real COCO annotations:\n"
    "  gligen-eval run benchmarks/full/coco2014-text-box.yaml --set model.name=masterful/gligen-1-4-generation-text-box\n"
    "(that file is the paper protocol: 512 px, 50 steps, YOLOv8x; its header lists the annotation files and\n"
    "weights to put on disk. model.name also takes a local diffusers folder or an official GLIGEN .bin;\n"
    "gligen-eval never downloads.)"
)


def _offline_defaults() -> None:
    # Never let a hub id trigger minutes of network retries; users who want downloads run the hub CLI first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="generate images for layouts, detect, score, write a run directory")
    p.add_argument("config", nargs="?", help="YAML config (default: the embedded offline demo)")
    p.add_argument("--out", help="run directory (default runs/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set sampler.steps=20 (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object on stdout")


def cmd_run(args) -> int:
    from gligen_eval.config import load_config
    from gligen_eval.reporting.run_summary import format_metrics_short
    from gligen_eval.runner import SWEEP_INDEX, run

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    cfg = load_config(args.config, overrides)
    out = run(cfg, resume=args.resume, progress=not args.no_progress)
    from gligen_eval.distributed import env_world

    if not env_world().is_main:  # under torchrun / accelerate only rank 0 reports (one JSON object in all)
        return 0
    sweep = out / SWEEP_INDEX
    if sweep.exists():
        index = json.loads(sweep.read_text())
        if args.json:
            print(json.dumps({"run_dir": str(out), "sweep": index}))
            return 0
        print(f"sweep directory: {out}  ({index['parameter']})")
        for p in index["points"]:
            print(f"  tau={p['tau']:<5g} {format_metrics_short(p['metrics'] or {})}")
        print(f"  table: {out / 'sweep.md'}; plot it with: gligen-eval report {out} --out reports/sweep")
        run_dirs = [out / p["run"] for p in index["points"]]
    else:
        metrics = json.loads((out / "metrics.json").read_text())
        if args.json:
            print(json.dumps({"run_dir": str(out), "metrics": metrics}))
            return 0
        print(f"run directory: {out}")
        print(f"  {format_metrics_short(metrics)}")
        print(f"  report: {out / 'report.md'}")
        run_dirs = [out]
    manifest = json.loads((run_dirs[0] / "manifest.json").read_text())
    if manifest.get("random_weights"):
        print("\nNOTE: these numbers come from random weights (tiny generator / detector built from .yaml);")
        print("they check that the pipeline works, not how good any model is.\n")
        print(REAL_RUN_HINT)
    return 0


def _add_score(sub) -> None:
    p = sub.add_parser("score-detections", help="score a COCO results file against COCO/LVIS-format annotations")
    p.add_argument("--layouts", required=True, help="ground truth in COCO (or LVIS) format")
    p.add_argument("--detections", required=True, help="detections in COCO results format")
    p.add_argument("--iou-type", choices=["bbox", "keypoints"], default="bbox")
    p.add_argument("--backend", choices=["hotcoco", "pycocotools", "faster"], default="hotcoco")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_score(args) -> int:
    from gligen_eval.scoring.coco import score_detections_file

    metrics = score_detections_file(args.layouts, args.detections, iou_type=args.iou_type, backend=args.backend)
    if args.json:
        print(json.dumps(metrics))
    else:
        width = max(len(k) for k in metrics)
        for k, v in metrics.items():
            print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def _add_layouts(sub) -> None:
    p = sub.add_parser("layouts", help="print a readable summary of a layout source")
    p.add_argument("source", help="'sample', a COCO instances/person_keypoints json, an LVIS json, a .jsonl, ...")
    p.add_argument("--limit", type=int, default=None, help="show at most N layouts")
    p.add_argument("--captions", default=None, help="COCO captions json paired with the source")


def cmd_layouts(args) -> int:
    from gligen_eval.layouts import load_layouts, summarize_layouts

    kwargs = {"captions": args.captions} if args.captions else {}
    layouts = load_layouts(args.source, **kwargs)
    print(summarize_layouts(layouts, limit=args.limit))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="leaderboard, plots and gallery for one or more runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="reports/latest", help="output folder (default reports/latest)")
    p.add_argument("--sort-by", default=None, help="metric to sort the leaderboard by (e.g. box/AP)")


def cmd_report(args) -> int:
    from gligen_eval.reporting import build_report

    from gligen_eval.runner import SWEEP_INDEX

    runs: list[Path] = []
    for r in map(Path, args.runs):
        index = r / SWEEP_INDEX
        if index.exists():  # a sweep folder stands for its runs
            runs.extend(r / p["run"] for p in json.loads(index.read_text())["points"])
        else:
            runs.append(r)
    files = build_report(runs, Path(args.out), sort_by=args.sort_by)
    for kind, path in files.items():
        print(f"{kind:<12} {path}")
    return 0


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="paired run-vs-run comparison with a regression gate (exit 1 on regression)")
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--gate", default=None, help="gate YAML (default: report differences, fail on nothing)")
    p.add_argument("--allow-mismatch", action="store_true", help="compare even if layouts/seeds differ")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    p.add_argument("--out", default=None, help="also write compare.md and compare.json to this folder")


def cmd_compare(args) -> int:
    from gligen_eval.reporting import compare_runs

    res = compare_runs(Path(args.baseline), Path(args.candidate), Path(args.gate) if args.gate else None,
                       allow_mismatch=args.allow_mismatch)  # fmt: skip
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(res.markdown)
        (out / "compare.json").write_text(json.dumps(res.to_json(), indent=2))
    if args.json:
        obj = res.to_json()
        if res.verdict == "unusable":  # the failure object every --json command prints, plus compare's fields
            named = [p for p in (args.candidate, args.baseline, args.gate) if p and res.message.startswith(f"{p}")]
            obj = {"error": res.message, "path": max(named, key=len) if named else None, **obj}
            print(f"gligen-eval compare: error: {res.message}", file=sys.stderr)
        print(json.dumps(obj))
    else:
        print(res.markdown)
    return res.exit_code


def _add_check_base(sub) -> None:
    p = sub.add_parser(
        "check-base",
        help="frozen-base check: did a GLIGEN/adapter checkpoint change any weight of the base UNet? (exit 1 if so)",
    )
    p.add_argument("base", help="the base UNet: a weights file, or a diffusers folder (its unet/ is used)")
    p.add_argument("candidate", help="an official GLIGEN checkpoint, an adapter .safetensors, or a UNet file/folder")
    p.add_argument("--atol", type=float, default=0.0, help="tolerated absolute difference per weight (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")


WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _unet_weights(path: str) -> Path:
    from gligen_eval.errors import InputError

    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for folder in (p / "unet", p):
            for name in WEIGHT_FILES:
                if (folder / name).is_file():
                    return folder / name
        raise InputError(f"no UNet weights ({' or '.join(WEIGHT_FILES)}) in the folder or its unet/", path=str(p))
    raise InputError("not found", path=str(p))


def cmd_check_base(args) -> int:
    from gligen_eval.generation.adapters import frozen_base_check

    base, candidate = _unet_weights(args.base), _unet_weights(args.candidate)
    report = frozen_base_check(base, candidate, atol=args.atol)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.summary())
    return 0 if report.ok else 1


COMMANDS = {
    "run": cmd_run,
    "score-detections": cmd_score,
    "layouts": cmd_layouts,
    "report": cmd_report,
    "compare": cmd_compare,
    "check-base": cmd_check_base,
}


def build_parser() -> argparse.ArgumentParser:
    from gligen_eval import __version__

    parser = argparse.ArgumentParser(
        prog="gligen-eval", description="Evaluate grounded (GLIGEN-style) text-to-image models."
    )
    parser.add_argument("--version", action="version", version=f"gligen-eval {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_score, _add_report, _add_compare, _add_layouts, _add_check_base):
        add(sub)
    return parser


def _one_line_warnings() -> None:
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"gligen-eval: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


BROKEN_PIPE_EXIT = 141
"""Exit status when stdout is closed early (``gligen-eval compare --json ... | head``): 128 + SIGPIPE."""


def os_error_message(e: OSError) -> tuple[str, str | None]:
    """One line for an OS error (read-only folder, full disk, permission) and the path it names."""
    import errno

    path = e.filename if e.filename is not None else None
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = "free some space, then run the command again (a run continues with --resume)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable location (--out) or fix its permissions"
    else:
        hint = "fix it, then run the command again (a run continues with --resume)"
    where = f"{os.fsdecode(path)}: " if path is not None else ""
    return f"{where}{reason}; {hint}", (os.fsdecode(path) if path is not None else None)


def _fail(args, message: str, path: str | None, code: int) -> int:
    """Report a failure: one line on stderr, and with --json one ``{"error", "path"}`` object on stdout."""
    print(f"gligen-eval {args.command}: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        try:
            print(json.dumps({"error": message, "path": path}))
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
    return code


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (e.g. captured)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    _offline_defaults()
    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT
    except GligenEvalError as e:
        if args.verbose:
            raise
        return _fail(args, str(e), getattr(e, "path", None), e.exit_code)
    except OSError as e:  # read-only --out, full disk, permission: the path and what to do, no traceback
        if args.verbose:
            raise
        message, path = os_error_message(e)
        return _fail(args, message, path, 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
