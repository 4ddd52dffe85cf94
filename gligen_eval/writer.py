"""Write generated images beside generation, so the generator never waits on PNG encoding or the disk.

One batch is one job: every image of it is encoded and written atomically
(:func:`~gligen_eval.store.atomic_write_bytes`), its record is built, and only then are the batch's
rows appended to ``samples.jsonl``: a row never names an image that is not complete on disk, so a
crash loses at most the batches still queued and ``--resume`` picks up as after a sequential run.

The jobs run on one thread through a bounded queue (Pillow's PNG encoder and the writes release the
GIL, so a thread overlaps them with generation; measured in ``benchmarks/bench_overlap.py``), in
submission order, so the files and rows are byte for byte those of the sequential writer
(``overlap=False``, which runs each job in the caller).

An error in a job (full disk, permission: :class:`~gligen_eval.errors.RunDirError`) stops the
writing; the jobs queued after it are dropped and the error is raised in the caller at its next
:meth:`BatchWriter.submit` or at :meth:`BatchWriter.close`.
"""

from __future__ import annotations

import io
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gligen_eval import store
from gligen_eval.records import SampleRecord


@dataclass(frozen=True)
class PendingImage:
    """One image to write: where, the PIL image, and how to build its record once the file is written."""

    path: Path
    image: Any
    record: Callable[[Any], SampleRecord]


def encode_png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


_STOP = object()


class BatchWriter:
    """Writes batches of images and appends their rows to ``out_file``; a context manager.

    ``overlap``: write on a background thread, holding at most ``max_pending`` batches that are not
    written yet (the generator waits when the writer falls that far behind). On leaving the ``with``
    block normally every queued batch is written; after an exception the queued batches are still
    written (they are good images), except after a ``KeyboardInterrupt`` or a writer error, which
    drop them.
    """

    def __init__(self, out_file: Path, *, overlap: bool = True, max_pending: int = 2):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.out_file = Path(out_file)
        self.overlap = overlap
        self.records: dict[str, SampleRecord] = {}
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        if overlap:
            self._thread = threading.Thread(target=self._work, name="gligen-eval-writer", daemon=True)
            self._thread.start()

    # -- caller side
    def submit(self, items: Sequence[PendingImage]) -> None:
        """Queue one batch (its rows are appended together, after all its files are written)."""
        self._raise_error()
        if not self.overlap:
            self._write_batch(items)
            return
        if self._thread is None:
            raise RuntimeError("the writer is closed")
        self._queue.put(list(items))  # blocks while max_pending batches wait; the worker always consumes
        self._raise_error()

    def close(self) -> dict[str, SampleRecord]:
        """Write what is queued, stop the thread, raise the first writer error; returns the records written."""
        self._stop()
        self._raise_error()
        return self.records

    def abandon(self) -> None:
        """Drop the queued batches (the one being written is finished) and stop the thread."""
        self._abandon.set()
        self._stop()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.abandon()
        else:
            self._stop()  # keep what was generated; the caller's own exception propagates

    def _stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            err = self._error
            raise err.with_traceback(err.__traceback__)

    # -- writer side
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self._error is not None or self._abandon.is_set():
                continue  # consume and drop, so that a blocked submit always returns
            try:
                self._write_batch(job)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self._error = e

    def _write_batch(self, items: Sequence[PendingImage]) -> None:
        records = []
        for item in items:
            store.atomic_write_bytes(item.path, encode_png(item.image))
            records.append(item.record(item.image))
        store.append_jsonl(self.out_file, [rec.to_dict() for rec in records])
        self.records.update((rec.sample_key, rec) for rec in records)
