"""Decoding the images of the next batches while the current batch runs on the model.

Why: decoding a radiograph and running the model's image processor on it is CPU work that the
engine used to do between two model calls, so the accelerator waited for it (about half the
wall time of the CheXagent-8b-shaped GPU benchmark on small phantom PNGs; real films are
2500 x 3000 JPEGs and cost more). Here a bounded pool of threads decodes the images of batches
k+1 .. k+depth while batch k is scored; the engine then takes the finished pixels instead of
decoding them.

Threads, not processes: Pillow's decoders and resampling and numpy's array arithmetic release
the GIL, so threads decode in parallel, and their results need no pickling (a preprocessed
448 px image is 2.4 MB of float32, a decoded 2500 x 3000 film 22 MB). A process pool would also
have to pickle the adapter (which holds the model) or fork a process that holds torch's thread
pools and a CUDA context. `bench/bench_prefetch.py` measures both on the same films
(docs/benchmarks.md).

Results do not depend on the prefetch: each image is decoded by the same function whichever
thread runs it, the engine stacks pixels in its own order, and batches are the same with and
without it. Memory is bounded by the lookahead: at most depth + 1 batches of images are held.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from harness.defaults import PREFETCH_BATCHES

B = TypeVar("B")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decode threads: one per available CPU, at most 32 (Pillow and numpy scale to that)."""
    return max(1, min(32, available_cpus()))


class ImagePrefetcher:
    """A pool that decodes images ahead of the batches that need them.

    `load(image)` turns one image reference into what the model side consumes (the adapter's
    preprocessed tensor, or a decoded picture for a model that runs its own processor); images
    are named by a key (the engine's image fingerprint) so an image shown in several batches of
    the lookahead is decoded once. `depth` = 0 decodes each batch's images only when that batch
    is scored (in parallel, but on the critical path, as before the prefetch existed).
    """

    def __init__(
        self, load: Callable[[Any], Any], workers: int | None = None, depth: int = PREFETCH_BATCHES
    ):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.load = load
        self.depth = int(depth)
        self.workers = int(workers) if workers else default_workers()
        if self.workers < 1:
            raise ValueError(f"decode workers must be >= 1, got {workers}")
        self._pool: ThreadPoolExecutor | None = None
        # key -> (future, number of scheduled batches that named it)
        self._pending: dict[str, tuple[Future, int]] = {}
        self._reserved: dict[int, list[str]] = {}
        self.scheduled_ahead = 0  # images handed to the pool by the lookahead
        self.decoded_now = 0  # images decoded on demand, the scored batch waiting for them
        self.wait_seconds = 0.0  # time the caller spent waiting for pixels (decode not hidden)

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="chexbench-decode"
            )
        return self._pool

    def settings(self) -> dict[str, Any]:
        """What the run card records: lookahead in batches and decode threads."""
        return {
            "prefetch_batches": self.depth,
            "decode_workers": self.workers,
            "decode_executor": "threads",
        }

    # ----- the lookahead ---------------------------------------------------------------------
    def stream(
        self, batches: Sequence[B], images_of: Callable[[B], Iterable[tuple[str, Any]]]
    ) -> Iterator[B]:
        """Yield `batches` in order, decoding `images_of(batch)` up to `depth` batches ahead.

        `images_of` is asked when a batch enters the lookahead, so it should name the images
        that batch will need then (the engine leaves out those already encoded). A key that is
        not scheduled, or was scheduled and then dropped, is decoded on demand by `get_many`.
        Leaving the loop early (an error in a batch) cancels the decoding not yet started.
        """
        scheduled = 0
        try:
            for k, batch in enumerate(batches):
                while scheduled < len(batches) and scheduled <= k + self.depth:
                    self._reserve(scheduled, images_of(batches[scheduled]))
                    scheduled += 1
                yield batch
                self._release(k)
        finally:
            for k in list(self._reserved):
                self._release(k)

    def _reserve(self, batch_index: int, images: Iterable[tuple[str, Any]]) -> None:
        keys = []
        for key, image in images:
            if key in keys:
                continue
            keys.append(key)
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = (self.pool.submit(self.load, image), 1)
                self.scheduled_ahead += 1
            else:
                self._pending[key] = (entry[0], entry[1] + 1)
        self._reserved[batch_index] = keys

    def _release(self, batch_index: int) -> None:
        for key in self._reserved.pop(batch_index, []):
            future, uses = self._pending[key]
            if uses > 1:
                self._pending[key] = (future, uses - 1)
            else:
                del self._pending[key]
                future.cancel()  # a no-op once it has run; frees the queue slot otherwise

    # ----- taking pixels ---------------------------------------------------------------------
    def get_many(self, images: Sequence[tuple[str, Any]]) -> list[Any]:
        """The loaded images, in the order given: prefetched ones as they finish, the others
        decoded now in the pool (in parallel with each other). A decoding error is raised here,
        for the batch that needs the image, as it would be without the prefetch."""
        futures: list[Future] = []
        for key, image in images:
            entry = self._pending.get(key)
            if entry is not None and not entry[0].cancelled():
                futures.append(entry[0])
            else:
                futures.append(self.pool.submit(self.load, image))
                self.decoded_now += 1
        start = time.perf_counter()
        wait(futures)
        self.wait_seconds += time.perf_counter() - start
        return [f.result() for f in futures]

    def close(self) -> None:
        """Drop everything scheduled and stop the threads (the engine calls this when done)."""
        for future, _ in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._reserved.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
