"""Detections read from a file instead of a model: ``detector: {kind: file, weights: DETECTIONS.json}``.

For detections made elsewhere (another tool, another machine, a hand-checked set) and for tests
that need known detections to go through the very same scoring as a model's. A detector sees
images, not sample keys, so the file lists detections per image under the image's pixel key
(:func:`pixel_key`: a hash of its size and RGB pixels, the same whatever the file format):

* JSON: ``{"<pixel key>": [<Detection dict>, ...], ...}``, or
  ``{"detector": {"name": ..., "fingerprint": ...}, "detections": {"<pixel key>": [...], ...}}``;
* JSONL (``.jsonl``): one ``{"image": "<pixel key>", "detections": [...]}`` per line, optionally
  after a first line ``{"detector": {"name": ..., "fingerprint": ...}}``.

``detector`` names the model that made the detections: its fingerprint is then the detector's
(runs scored from files of the same model pair up in ``compare``, and cached detections are keyed
by it); without it the fingerprint is a hash of the detections themselves.

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


def write_detections(path: str | Path, table: Mapping[str, Sequence[Detection]], *,
                     detector: Mapping[str, str] | None = None) -> Path:  # fmt: skip
    """Write ``{pixel key: [Detection]}`` as a detections file (JSONL when ``path`` ends in ``.jsonl``);
    ``detector``: ``{"name", "fingerprint"}`` of the model that made them."""
    path = Path(path)
    rows = {k: [d.to_dict() for d in v] for k, v in table.items()}
    if path.suffix == ".jsonl":
        head = json.dumps({"detector": dict(detector)}) + "\n" if detector else ""
        text = head + "".join(json.dumps({"image": k, "detections": v}) + "\n" for k, v in rows.items())
    else:
        text = json.dumps({"detector": dict(detector), "detections": rows} if detector else rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_detections(path: str | Path) -> tuple[dict[str, list[Detection]], dict[str, str] | None]:
    """``({pixel key: [Detection]}, detector or None)`` of a detections file; a bad line or record names
    the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"detections file not found: {path} (detector kind 'file' reads its weights path)")
    text = path.read_text(encoding="utf-8")
    header: list[Any] = []
    if path.suffix == ".jsonl":
        items: Iterable[tuple[str, Any, str]] = _jsonl_items(path, text, header)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON ({e.msg})", path=str(path)) from None
        if isinstance(data, dict) and "detector" in data:
            header.append(data["detector"])
            data = data.get("detections")
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
    return out, _detector(header[0], path) if header else None


def _detector(d: Any, path: Path) -> dict[str, str]:
    if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("fingerprint"), str)
            and d["fingerprint"]):  # fmt: skip
        raise InputError('"detector" must be {"name": str, "fingerprint": non-empty str}', path=str(path))
    return {"name": d["name"], "fingerprint": d["fingerprint"]}


def _jsonl_items(path: Path, text: str, header: list[Any]):
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if i == 1 and isinstance(row, dict) and set(row) == {"detector"}:
                header.append(row["detector"])
                continue
            yield str(row["image"]), row["detections"], f"line {i}"
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError('expected {"image": pixel key, "detections": [...]}', path=str(path),
                             record=f"line {i}") from None  # fmt: skip


class FileDetector:
    """The :class:`~gligen_eval.scoring.detectors.Detector` that returns the detections a file lists."""

    def __init__(self, weights: str, device: str = "cpu") -> None:
        self.path = Path(weights)
        self.table, made_by = read_detections(self.path)
        if made_by is not None:
            self.name, self._fingerprint = made_by["name"], made_by["fingerprint"]
        else:
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
