"""The run directory: atomic writes, append-only records, content-addressed images, resume.

Layout of a run directory (the contract reports and tools rely on)::

    RUN/manifest.json     resolved config, versions, git hash, model fingerprints, seed policy, schema version
    RUN/layouts.jsonl     one Layout per line
    RUN/images/<key>.png  one PNG per sample, named by its content key
    RUN/samples.jsonl     one SampleRecord per line
    RUN/detections.jsonl  {"sample_key", "detector", "detections": [...]} per line
    RUN/instances.jsonl   one InstanceRecord per line
    RUN/metrics.json      flat, namespaced metrics ("box/AP", "box/mIoU", ...)
    RUN/breakdowns.json   per-category and other breakdowns
    RUN/report.md         short human summary

Every file is written atomically (temp file + rename) or appended line by line with a flush
and fsync per batch, so a run killed at any moment loses at most the batch in flight.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from gligen_eval.imageio import pil_open

SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
LAYOUTS = "layouts.jsonl"
SAMPLES = "samples.jsonl"
DETECTIONS = "detections.jsonl"
INSTANCES = "instances.jsonl"
METRICS = "metrics.json"
BREAKDOWNS = "breakdowns.json"
REPORT = "report.md"
IMAGES = "images"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON has no such numbers;
    ``null`` in a run's files means "undefined", e.g. mIoU with no instances)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _dumps_line(row: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(row), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def append_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows as JSON lines, then flush and fsync. Returns how many were written."""
    lines = [_dumps_line(r) for r in rows]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _truncate_partial_last_line(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def _truncate_partial_last_line(path: Path) -> None:
    """A run killed mid-write can leave a last line without its newline: drop it before appending when
    it is cut short, end it with its newline when it is whole JSON (:func:`iter_jsonl` reads it)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:
            f.truncate(cut)
        else:
            f.write(b"\n")


def iter_jsonl(path: Path, *, tolerate_partial_tail: bool = True) -> Iterator[dict[str, Any]]:
    """Read JSON lines. A truncated last line (from an interrupted run) is skipped; any other bad
    line is an error naming the file and line number."""
    from gligen_eval.errors import InputError

    path = Path(path)
    if not path.exists():
        return
    with open(path, "r", encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            last = i == len(lines) and not line.endswith("\n")
            if tolerate_partial_tail and last:
                return
            raise InputError(f"not valid JSON ({e.msg})", path=str(path), record=f"line {i}") from None


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    text = "".join(_dumps_line(r) for r in rows)
    atomic_write_text(Path(path), text)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_complete_png(path: Path) -> bool:
    """Cheap check (no decoding) that ``path`` is a whole PNG file: its signature and its closing
    IEND chunk are there. Catches the truncated or emptied files an interrupted write leaves."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            if f.tell() < len(PNG_SIGNATURE) + len(PNG_END):
                return False
            f.seek(-len(PNG_END), os.SEEK_END)
            tail = f.read()
    except OSError:
        return False
    return head == PNG_SIGNATURE and tail == PNG_END


def is_valid_png(path: Path) -> bool:
    """True when ``path`` is a complete, decodable image (truncated or corrupt files are False)."""
    try:
        with pil_open(path) as im:
            im.load()
        return True
    except Exception:
        return False


class RunDir:
    """Paths and helpers of one run directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def images(self) -> Path:
        return self.root / IMAGES

    def image_path(self, sample_key: str) -> Path:
        return self.images / f"{sample_key}.png"

    def image_relpath(self, sample_key: str) -> str:
        return f"{IMAGES}/{sample_key}.png"

    def record_files(self, name: str) -> list[Path]:
        """``name`` and its per-rank parts (``samples.rank1.jsonl``...) written by distributed runs."""
        stem = name[: -len(".jsonl")]
        return [self.path(name)] + sorted(self.root.glob(f"{stem}.rank*.jsonl"))

    def rank_file(self, name: str, rank: int | None) -> Path:
        """Where a rank appends its records (``None``: a one-process run writes ``name`` itself)."""
        if rank is None:
            return self.path(name)
        return self.path(f"{name[: -len('.jsonl')]}.rank{rank}.jsonl")

    def exists(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def is_complete(self) -> bool:
        return (self.root / METRICS).is_file()

    def manifest(self) -> dict[str, Any]:
        return read_json(self.root / MANIFEST)

    def metrics(self) -> dict[str, Any]:
        return read_json(self.root / METRICS)

    def rows(self, name: str) -> list[dict[str, Any]]:
        return list(iter_jsonl(self.root / name))

    def layouts(self):
        from gligen_eval.records import Layout

        return [Layout.from_dict(r) for r in iter_jsonl(self.root / LAYOUTS)]

    def samples(self):
        from gligen_eval.records import SampleRecord

        return [SampleRecord.from_dict(r) for r in iter_jsonl(self.root / SAMPLES)]

    def instances(self):
        from gligen_eval.records import InstanceRecord

        return [InstanceRecord.from_dict(r) for r in iter_jsonl(self.root / INSTANCES)]

    def detections(self) -> dict[tuple[str, str], list]:
        """{(sample_key, detector fingerprint): [Detection, ...]}, rank parts included; a later row wins."""
        from gligen_eval.records import Detection

        out: dict[tuple[str, str], list] = {}
        for f in self.record_files(DETECTIONS):
            for r in iter_jsonl(f):
                out[(r["sample_key"], r["detector"])] = [Detection.from_dict(d) for d in r["detections"]]
        return out
