"""Read a finished run directory for reports and comparisons.

Everything is loaded lazily: a leaderboard only reads ``manifest.json`` and ``metrics.json``;
plots, the gallery and the gate read the per-sample records when they need them (through
:func:`gligen_eval.store.iter_jsonl`). Bad records are an :class:`~gligen_eval.errors.InputError`
naming the file and the line; a last line cut short by an interrupted write is left out with a warning.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from gligen_eval import store
from gligen_eval.schema import COUNT_KEYS  # noqa: F401  (compare reads it from here until it imports schema)
from gligen_eval.errors import InputError
from gligen_eval.records import Detection, InstanceRecord, Layout, SampleRecord

# Keys of metrics.json that count things rather than measure them.


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{what} is not valid JSON ({e.msg}, line {e.lineno})", path=str(path)) from None


class RunData:
    """One run directory (see :mod:`gligen_eval.store` for its files)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError("not a directory", path=str(self.path))
        if not (self.path / store.MANIFEST).is_file():
            raise InputError(f"not a run directory (no {store.MANIFEST})", path=str(self.path))
        if not (self.path / store.METRICS).is_file():
            raise InputError(
                f"unfinished run (no {store.METRICS}); finish it with `gligen-eval run CONFIG --resume`",
                path=str(self.path),
            )
        self.manifest: dict[str, Any] = _read_json(self.path / store.MANIFEST, store.MANIFEST)
        metrics = _read_json(self.path / store.METRICS, store.METRICS)
        if not isinstance(metrics, dict):
            raise InputError("must hold one JSON object", path=str(self.path / store.METRICS))
        self.metrics: dict[str, Any] = metrics
        self.label = str(self.manifest.get("name") or self.path.name)
        self._remember_key_specs()

    def _remember_key_specs(self) -> None:
        """The key specs the manifest records for the run's own scorers (``models.<role>.keys``), so that
        reports and compare show their keys with their direction and decimals (as data: nothing of the
        run is imported)."""
        from gligen_eval.scoring.protocol import remember_specs

        for info in (self.manifest.get("models") or {}).values():
            if isinstance(info, dict) and isinstance(info.get("keys"), list):
                remember_specs(info["keys"])

    def __repr__(self) -> str:
        return f"RunData({str(self.path)!r})"

    # ---- manifest views ----------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    def cfg(self, section: str, key: str, default: Any = None) -> Any:
        return (self.config.get(section) or {}).get(key, default)

    @property
    def config_hash(self) -> str | None:
        return self.manifest.get("config_hash")

    @property
    def model_name(self) -> str:
        name = str(self.cfg("model", "name", "") or (self.manifest.get("models") or {}).get("generator", {}).get("name", "?"))
        p = Path(name)
        return p.name if len(p.parts) > 1 else name

    @property
    def generator_fingerprint(self) -> str | None:
        gen = (self.manifest.get("models") or {}).get("generator") or {}
        if gen.get("fingerprint"):
            return str(gen["fingerprint"])
        fps = gen.get("fingerprints")
        if fps:
            from gligen_eval.records import stable_hash

            return stable_hash(fps)
        return None

    @property
    def detector_fingerprint(self) -> str | None:
        det = (self.manifest.get("models") or {}).get("detector") or {}
        return det.get("fingerprint")

    @cached_property
    def detector_takes_phrases(self) -> bool:
        """Whether the run's detector looked for the layout phrases (open-vocabulary): its labels are
        phrases, which scoring maps to the objects' classes (:func:`~gligen_eval.scoring.boxes.relabel_phrases`)."""
        det = (self.manifest.get("models") or {}).get("detector") or {}
        if "takes_phrases" in det:  # what the scoring recorded
            return bool(det["takes_phrases"])
        # a run written before the manifest recorded it: the built-in open-vocabulary kinds (no code of
        # the run directory is imported to find out)
        return str(det.get("kind") or self.cfg("detector", "kind", "yolo")) in ("owlv2", "grounding-dino")

    @property
    def detector_name(self) -> str:
        det = (self.manifest.get("models") or {}).get("detector") or {}
        return str(det.get("name") or self.cfg("detector", "weights", "?"))

    @property
    def git(self) -> str:
        g = self.manifest.get("git") or {}
        h = g.get("hash")
        if not h:
            return "unknown"
        return str(h)[:10] + ("+dirty" if g.get("dirty") else "")

    @property
    def dataset(self) -> str:
        src = (self.manifest.get("layouts") or {}).get("source") or self.cfg("layouts", "source", "?")
        name = Path(str(src)).name or str(src)
        limit = self.cfg("layouts", "limit")
        return f"{name} (limit {limit})" if limit else name

    @property
    def random_weights(self) -> bool:
        return bool(self.manifest.get("random_weights"))

    @cached_property
    def modality(self) -> str:
        resolved = (self.manifest.get("resolved") or {}).get("modality")
        if isinstance(resolved, str):  # what the runner detected from the model
            return resolved
        gen = (self.manifest.get("models") or {}).get("generator") or {}
        for key in ("modality", "grounding"):
            if isinstance(gen.get(key), str):
                return gen[key]
        kinds = set()
        for lay in self.layouts.values():
            for o in lay.objects:
                if o.keypoints is not None:
                    kinds.add("keypoint")
                elif o.reference_image is not None:
                    kinds.add("text-image-box")
                else:
                    kinds.add("text-box")
        if "keypoint" in kinds:
            return "keypoint"
        if "text-image-box" in kinds:
            return "text-image-box"
        return "text-box" if kinds else "?"

    @property
    def sampler(self) -> dict[str, Any]:
        return self.config.get("sampler") or {}

    @property
    def sampler_text(self) -> str:
        s = self.sampler
        if not s:
            return "?"
        parts = [f"{s.get('scheduler', '?')} {s.get('steps', '?')} steps", f"cfg {s.get('guidance_scale', '?')}",
                 f"{s.get('width', '?')}x{s.get('height', '?')}", schedule_text(s)]  # fmt: skip
        return ", ".join(parts)

    @property
    def tau(self) -> float | None:
        return tau_of(self.sampler)

    # ---- metrics -----------------------------------------------------------------------------

    def metric(self, key: str) -> float | None:
        v = self.metrics.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        return float(v)

    def ci(self, key: str) -> tuple[float, float] | None:
        lo, hi = self.metric(f"{key}/lo"), self.metric(f"{key}/hi")
        if lo is None or hi is None:
            return None
        return lo, hi

    @cached_property
    def breakdowns(self) -> dict[str, Any]:
        p = self.path / store.BREAKDOWNS
        if not p.is_file():
            return {}
        data = _read_json(p, store.BREAKDOWNS)
        return data if isinstance(data, dict) else {}

    # ---- records -----------------------------------------------------------------------------

    @cached_property
    def layouts(self) -> dict[str, Layout]:
        out: dict[str, Layout] = {}
        for lay in store.iter_jsonl(self.path / store.LAYOUTS, Layout.from_dict):
            out[lay.layout_id] = lay
        return out

    def _parts(self, name: str) -> list[Path]:
        """``name`` plus the per-rank parts a distributed run leaves when it is interrupted before merging."""
        return store.RunDir(self.path).record_files(name)

    @cached_property
    def samples(self) -> list[SampleRecord]:
        out: dict[str, SampleRecord] = {}
        for part in self._parts(store.SAMPLES):
            for s in store.iter_jsonl(part, SampleRecord.from_dict):
                out[s.sample_key] = s  # a later row for the same key wins
        return list(out.values())

    @cached_property
    def instances(self) -> list[InstanceRecord]:
        return list(store.iter_jsonl(self.path / store.INSTANCES, InstanceRecord.from_dict))

    @cached_property
    def _detections_by_detector(self) -> dict[str, dict[str, list[Detection]]]:
        """{detector fingerprint: {sample_key: detections}} (a later row for the same key wins)."""
        by_detector: dict[str, dict[str, list[Detection]]] = {}

        def parse(row: Mapping[str, Any]):
            return row["sample_key"], str(row.get("detector", "")), [Detection.from_dict(d) for d in row["detections"]]

        for part in self._parts(store.DETECTIONS):
            for key, det, dets in store.iter_jsonl(part, parse):
                by_detector.setdefault(det, {})[key] = dets
        return by_detector

    def detections_of(self, role: str) -> dict[str, list[Detection]]:
        """{sample_key: detections} of the model the manifest lists under ``role`` (``"pose"``,
        ``"detector@<name>"``...); empty when the run has none."""
        fp = ((self.manifest.get("models") or {}).get(role) or {}).get("fingerprint")
        return self._detections_by_detector.get(str(fp), {}) if fp else {}

    @cached_property
    def detections(self) -> dict[str, list[Detection]]:
        """{sample_key: detections} of the run's detector (a later row for the same key wins)."""
        by_detector = self._detections_by_detector
        if not by_detector:
            return {}
        fp = self.detector_fingerprint
        if fp in by_detector:
            return by_detector[fp]
        if len(by_detector) == 1:
            return next(iter(by_detector.values()))
        raise InputError(
            f"holds detections of several detectors ({', '.join(sorted(by_detector))}) and the manifest names "
            f"none of them ({fp!r})",
            path=str(self.path / store.DETECTIONS),
        )

    @cached_property
    def condition_maps(self) -> dict[str, tuple[Path | None, Path | None]]:
        """{sample_key: (input condition map, map re-extracted from the image)} of a spatial run's
        condition-consistency rows (files under ``cond_maps/``); empty for other runs."""
        from gligen_eval.scoring.consistency import sample_rows

        def path(rel: Any) -> Path | None:
            return self.path / rel if isinstance(rel, str) and rel else None

        return {k: (path(r.get("condition")), path(r.get("extracted"))) for k, r in sample_rows(self.path, self.manifest).items()}

    def image_path(self, sample: SampleRecord) -> Path:
        return self.path / sample.image


def schedule_text(sampler: Mapping[str, Any]) -> str:
    if sampler.get("schedule") == "beta":
        return f"beta {sampler.get('beta')}"
    alpha = sampler.get("alpha")
    if alpha is None:
        return str(sampler.get("schedule", "?"))
    return "alpha [" + ", ".join(f"{a:g}" for a in alpha) + "]"


def tau_of(sampler: Mapping[str, Any]) -> float | None:
    """The fraction of denoising steps that see grounding (τ in the GLIGEN paper).

    For the hard cut this is ``beta``; for the ``[p1, p2, p3]`` schedule it is the area under the
    grounding scale, ``p1 + p2 / 2`` (equal to ``p1`` for the official schedules, where p2 = 0).
    """
    if not sampler:
        return None
    if sampler.get("schedule") == "beta":
        b = sampler.get("beta")
        return float(b) if b is not None else None
    alpha = sampler.get("alpha")
    if not alpha or len(alpha) != 3:
        return None
    return float(alpha[0]) + float(alpha[1]) / 2.0


def load_runs(paths: list[Path]) -> list[RunData]:
    """Load run directories; labels that collide get their directory name appended."""
    if not paths:
        raise InputError("no run directories given")
    runs = [RunData(p) for p in paths]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1 and r.path.name != r.label:
            r.label = f"{r.label} ({r.path.name})"
    used: set[str] = set()
    for r in runs:
        label, n = r.label, 2
        while r.label in used:
            r.label, n = f"{label} #{n}", n + 1
        used.add(r.label)
    return runs
