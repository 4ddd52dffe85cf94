"""Detections read from a file instead of a model: ``detector: {kind: file, weights: DETECTIONS.json}``.

For detections made elsewhere (another tool, another machine, a hand-checked set) and for tests
that need known detections to go through the very same scoring as a model's. A detector sees
images, not sample keys, so the file lists detections per image under the image's pixel key
(:func:`pixel_key`: a hash of its size and RGB pixels, the same whatever the file format):

* JSON: ``{"<pixel key>": [<Detection dict>, ...], ...}``, or
* JSONL (``.jsonl``): one ``{"image": "<pixel key>", "detections": [...]}`` per line.

A Detection dict is :meth:`~gligen_eval.records.Detection.to_dict`'s (normalized ``box`` xyxy,
``label``, ``score``, optional ``keypoints``), so the same file serves ``pose``. An image the file
does not list is an error naming the file (list it with ``[]`` for an image without detections).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from gligen_eval.errors import InputError, MissingWeightsError
from gligen_eval.records import Detection, stable_hash


def pixel_key(image: Any) -> str:
    """The key of a PIL image in a detections file: sha256 of its size and RGB pixels (20 hex digits)."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()[:20]


def write_detections(path: str | Path, table: Mapping[str, Sequence[Detection]]) -> Path:
    """Write ``{pixel key: [Detection]}`` as a detections file (JSONL when ``path`` ends in ``.jsonl``)."""
    path = Path(path)
    rows = {k: [d.to_dict() for d in v] for k, v in table.items()}
    if path.suffix == ".jsonl":
        text = "".join(json.dumps({"image": k, "detections": v}) + "\n" for k, v in rows.items())
    else:
        text = json.dumps(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_detections(path: str | Path) -> dict[str, list[Detection]]:
    """``{pixel key: [Detection]}`` of a detections file; a bad line or record names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"detections file not found: {path} (detector kind 'file' reads its weights path)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        items: Iterable[tuple[str, Any, str]] = _jsonl_items(path, text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON ({e.msg})", path=str(path)) from None
        if not isinstance(data, dict):
            raise InputError("a detections file is a JSON object {pixel key: [detections]}", path=str(path))
        items = ((str(k), v, f"image {k}") for k, v in data.items())
    out: dict[str, list[Detection]] = {}
    for key, dets, where in items:
        if not isinstance(dets, list):
            raise InputError("detections must be a list", path=str(path), record=where)
        try:
            out[key] = [Detection.from_dict(d) for d in dets]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"bad detection ({e})", path=str(path), record=where) from None
    return out


def _jsonl_items(path: Path, text: str):
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            yield str(row["image"]), row["detections"], f"line {i}"
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError('expected {"image": pixel key, "detections": [...]}', path=str(path),
                             record=f"line {i}") from None  # fmt: skip


class FileDetector:
    """The :class:`~gligen_eval.scoring.detectors.Detector` that returns the detections a file lists."""

    def __init__(self, weights: str, device: str = "cpu") -> None:
        self.path = Path(weights)
        self.table = read_detections(self.path)
        self.name = f"file:{self.path.stem}"
        self._fingerprint = stable_hash({k: [d.to_dict() for d in v] for k, v in sorted(self.table.items())})

    @classmethod
    def check_weights(cls, config: Mapping[str, Any]) -> None:
        """Preflight: the file exists and every record reads."""
        read_detections(config["weights"])

    def fingerprint(self) -> str:
        return self._fingerprint

    def detect(self, images: list[Any]) -> list[list[Detection]]:
        out = []
        for im in images:
            key = pixel_key(im)
            if key not in self.table:
                raise InputError(f"no detections listed for an image of {im.width}x{im.height} pixels "
                                 f"(pixel key {key}); list it, with [] for none", path=str(self.path))  # fmt: skip
            out.append(list(self.table[key]))
        return out
