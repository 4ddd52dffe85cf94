"""The one loop behind every cached, resumable stage: process what is missing, in fixed chunks.

Generation, every detector pass, CLIP and the condition scores all work the same way: the items
(requests, samples, images) are cut into fixed chunks in one-process order, each rank takes its
share (:func:`gligen_eval.distributed.my_chunks`), a chunk with anything missing is processed whole
(so every result always comes from the same batch: bit-identical reruns) and the stage appends only
the new rows to its record file. An interrupted run resumes where it stopped because finished
chunks are skipped.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence, TypeVar

from gligen_eval import distributed

T = TypeVar("T")


def process_missing(
    items: Sequence[T],
    *,
    is_done: Callable[[T], bool],
    process: Callable[[Sequence[T]], None],
    chunk_size: int,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
    desc: str = "",
    unit: str = "img",
) -> int:
    """Call ``process(chunk)`` for this rank's chunks of ``items`` that have an item not ``is_done``;
    returns how many items those chunks hold. ``process`` sees the whole chunk (cached items too) and
    is responsible for keeping the cached results it already has."""
    from tqdm.auto import tqdm

    dist = dist or distributed.DistInfo()
    todo = [c for c in distributed.my_chunks(items, chunk_size, dist) if not all(map(is_done, c))]
    total = sum(map(len, todo))
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress or not todo, file=sys.stderr) as bar:
        for chunk in todo:
            process(chunk)
            bar.update(len(chunk))
    return total
