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
    RUN/.lock             the writer's lock while a run writes the directory (:mod:`gligen_eval.runlock`)

Every file is written atomically (temp file + rename) or appended line by line with a flush
and fsync per batch, so a run killed at any moment loses at most the batch in flight. Files get
the mode the user's umask gives (0644 under umask 022), so shared runs stay readable. An OS error
while writing (permission, read-only or full disk) is a one-line :class:`~gligen_eval.errors.RunDirError`
naming the path; what was written before stays, so the run can be resumed.

Readers skip a last line cut short by an interrupted write, with one warning per file
(:class:`TruncatedRowWarning`); rerunning the run's config on the directory repairs it.

One process writes a run directory at a time: :class:`~gligen_eval.runlock.RunLock` (``RUN/.lock``).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import secrets
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

from gligen_eval.errors import RunDirError
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
INPUTS = "inputs"
"""Inpainting input images as the sampler used them (one per layout and size), for the preservation score."""


def write_error(path: str | os.PathLike[str], e: OSError) -> RunDirError:
    """The one-line error for an OS error ``e`` while writing ``path``."""
    reason = e.strerror or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space, then run the command again (a run continues with --resume)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable --out or fix its permissions"
    else:
        hint = "fix it, then run the command again (a run continues with --resume)"
    return RunDirError(f"cannot write ({reason}); {hint}", path=str(path))


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OS error raised inside the block into a :class:`RunDirError` naming ``path``."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from e


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _new_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, created with mode 0666 less the umask (``mkstemp`` would
    give 0600, which teammates and web servers cannot read once it is renamed into place)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    ensure_dir(path.parent)
    with writing(path):
        fd, tmp = _new_temp(path)
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
    ensure_dir(path.parent)
    with writing(path):
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


class TruncatedRowWarning(UserWarning):
    """A record file's last line was cut short by an interrupted write; readers leave it out."""


_warned_tails: set[tuple[str, int, int]] = set()  # (file, size, mtime) already reported: one warning per file


def _warn_truncated(path: Path) -> None:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (str(path), -1, -1)
    if key in _warned_tails:
        return
    _warned_tails.add(key)
    warnings.warn(
        f"{path}: the last line is cut short (a write was interrupted) and is left out; "
        "rerunning the run's config on this directory repairs it",
        TruncatedRowWarning, stacklevel=3,
    )  # fmt: skip


def iter_jsonl(path: Path, parse: Callable[[dict[str, Any]], Any] | None = None, *,
               partial_tail: Literal["warn", "skip"] = "warn") -> Iterator[Any]:  # fmt: skip
    """The rows of a JSON Lines record file (each passed through ``parse`` when given); a missing file has none.

    A last line without its newline that is not whole JSON (a write cut short by an interrupted run) is
    left out, with one :class:`TruncatedRowWarning` per file (``partial_tail="skip"``: silently, for
    writers that repair the file themselves). Any other bad line, or a row ``parse`` rejects, is an
    :class:`~gligen_eval.errors.InputError` naming the file and the line number.
    """
    from gligen_eval.errors import InputError

    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    last = len(lines)
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if i == last:  # no newline after it: cut short
                if partial_tail == "warn":
                    _warn_truncated(path)
                return
            why = f"not UTF-8 text ({e.reason})" if isinstance(e, UnicodeDecodeError) else f"not valid JSON ({e.msg})"
            raise InputError(why, path=str(path), record=f"line {i}") from None
        if parse is None:
            yield row
            continue
        try:
            yield parse(row)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"bad record ({type(e).__name__}: {e})", path=str(path), record=f"line {i}") from None


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


def png_problem(path: Path) -> str | None:
    """``None`` when ``path`` is a whole PNG whose every chunk checksum holds and that decodes; else what
    is wrong (missing, truncated, damaged...). Catches bytes damaged anywhere in the file, which the
    cheap :func:`is_complete_png` cannot see."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG file (no PNG signature)"
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            return "truncated"
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return "truncated"
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"damaged (checksum mismatch in chunk {kind.decode('latin-1')!r} at byte {pos})"
        pos = end
        if kind == b"IEND":
            break
    if pos != len(data):
        return f"damaged ({len(data) - pos} bytes after the end of the image)"
    try:
        with pil_open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 - any decoder error means the same: regenerate it
        return f"cannot be decoded ({e})"
    return None


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

    def merged_rows(self, name: str, key: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of ``name`` and its rank parts, one per value of the ``key`` fields (a later row wins)."""
        rows: dict[tuple, dict[str, Any]] = {}
        for f in self.record_files(name):
            for r in iter_jsonl(f):
                rows[tuple(r[k] for k in key)] = r
        return list(rows.values())

    def replace_records(self, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write ``name`` as exactly ``rows`` (atomically), then delete its rank parts: the fold of a
        distributed run's records (rank 0, after a barrier), also of parts an interrupted one left."""
        write_jsonl(self.path(name), rows)
        for f in self.record_files(name)[1:]:
            f.unlink()

    def merge_rank_rows(self, name: str, key: Sequence[str]) -> None:
        """Fold the per-rank parts of a record file into the file itself (a later row with the same
        ``key`` fields wins)."""
        self.replace_records(name, self.merged_rows(name, key))

    def exists(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def lock(self, config_hash: str, **kwargs: Any):
        """The writer lock of this run directory (:class:`~gligen_eval.runlock.RunLock`, not taken yet)."""
        from gligen_eval.runlock import RunLock

        return RunLock(self.root, config_hash, **kwargs)

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

        return list(iter_jsonl(self.root / LAYOUTS, Layout.from_dict))

    def samples(self):
        from gligen_eval.records import SampleRecord

        return list(iter_jsonl(self.root / SAMPLES, SampleRecord.from_dict))

    def instances(self):
        from gligen_eval.records import InstanceRecord

        return list(iter_jsonl(self.root / INSTANCES, InstanceRecord.from_dict))

    def detections(self) -> dict[tuple[str, str], list]:
        """{(sample_key, detector fingerprint): [Detection, ...]}, rank parts included; a later row wins."""
        from gligen_eval.records import Detection

        out: dict[tuple[str, str], list] = {}
        for f in self.record_files(DETECTIONS):
            for r in iter_jsonl(f, partial_tail="skip"):  # read while scoring: the next append repairs a cut row
                out[(r["sample_key"], r["detector"])] = [Detection.from_dict(d) for d in r["detections"]]
        return out
