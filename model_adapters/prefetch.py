"""Decoding the images of the next batches while the current batch runs on the model.

Why: decoding a radiograph and running the model's image processor on it is CPU work that the
engine used to do between two model calls, so the accelerator waited for it (about half the
wall time of the CheXagent-8b-shaped GPU benchmark on small phantom PNGs; real films are
2500 x 3000 JPEGs and cost more). Here a bounded pool decodes the images of batches
k+1 .. k+depth while batch k is scored; the engine then takes the finished pixels instead of
decoding them.

Processes where the platform forks, threads elsewhere. Pillow's decoders and numpy's arithmetic
release the GIL, but the image processors' Python and Pillow's image-to-array copies hold it, and
the model's own thread needs the GIL between every two operators (on a GPU, to launch each
kernel). On 2 CPU cores a decoding thread slowed the model's forward 1.9x, a decoding process
1.6x (`bench/bench_prefetch.py`, docs/benchmarks.md). Forked workers inherit the loader (the
adapter's preprocessing, model included) without pickling it; they run one torch thread and no
CUDA, the way torch's DataLoader workers do, and send back only the pixels (through the result
pipe, not shared-memory files). The pool lives for one pass over the batches (`stream`), so no
idle processes outlive it.

Results do not depend on the prefetch: each image is decoded by the same function wherever it
runs, the engine stacks pixels in its own order, and batches are the same with and without it.
Memory is bounded by the lookahead: at most depth + 1 batches of images are held.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.defaults import PREFETCH_BATCHES

B = TypeVar("B")
EXECUTORS = ("auto", "processes", "threads")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decode workers: one per available CPU, at most 32."""
    return max(1, min(32, available_cpus()))


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


# ----- what a forked worker runs ---------------------------------------------------------------
_WORKER_LOAD: Callable[[Any], Any] | None = None


def _die_with_parent(parent: int) -> None:
    """A worker blocks on its task queue, whose write end it inherited, so it would outlive a
    killed engine (kill -9, OOM) and keep the engine's stdout and stderr open: Linux kills it
    when the parent dies (PR_SET_PDEATHSIG); elsewhere a watcher thread polls the parent."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="chexbench-decode-watch").start()


def _init_worker(load: Callable[[Any], Any], parent: int) -> None:
    """Runs once in each forked worker: the loader arrives by fork, not by pickle."""
    global _WORKER_LOAD
    _die_with_parent(parent)
    _WORKER_LOAD = load
    import torch

    torch.set_num_threads(1)  # no OpenMP pool after fork (torch's DataLoader does the same)


@dataclass(frozen=True)
class _WireTensor:
    """A tensor on its way back from a worker: its bytes as a numpy array, so it travels
    through the result pipe. torch's own pickling would put it in a shared-memory file, which
    fails under a file-size limit (RLIMIT_FSIZE) and costs a file descriptor per tensor."""

    dtype: str
    shape: tuple[int, ...]
    data: Any  # numpy uint8, the tensor's bytes in C order

    @classmethod
    def of(cls, value: Any) -> Any:
        import torch

        if not isinstance(value, torch.Tensor):
            return value
        t = value.detach().contiguous()
        return cls(
            str(t.dtype).removeprefix("torch."),
            tuple(t.shape),
            t.reshape(-1).view(torch.uint8).numpy(),
        )

    @staticmethod
    def back(value: Any) -> Any:
        """The tensor again, bit for bit (any dtype, bfloat16 included), or `value` itself."""
        if not isinstance(value, _WireTensor):
            return value
        import torch

        return torch.from_numpy(value.data).view(getattr(torch, value.dtype)).reshape(value.shape)


def _load_in_worker(image: Any) -> Any:
    assert _WORKER_LOAD is not None
    try:
        return _WireTensor.of(_WORKER_LOAD(image))
    except Exception as exc:
        try:  # the error goes back to the engine as itself when it survives pickling
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any failure to pickle: send its text instead
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


# ----- the prefetcher --------------------------------------------------------------------------
class ImagePrefetcher:
    """A pool that decodes images ahead of the batches that need them.

    `load(image)` turns one image reference into what the model side consumes (the adapter's
    preprocessed tensor, or a decoded picture for a model that runs its own processor); images
    are named by a key (the engine's image fingerprint) so an image shown in several batches of
    the lookahead is decoded once. `depth` = 0 decodes each batch's images only when that batch
    is scored (in parallel, but on the critical path, as before the prefetch existed).
    `executor`: "processes" (forked), "threads", or "auto" (processes where fork exists).
    """

    def __init__(
        self,
        load: Callable[[Any], Any],
        workers: int | None = None,
        depth: int = PREFETCH_BATCHES,
        executor: str = "auto",
    ):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        if executor not in EXECUTORS:
            raise ValueError(f"decode executor must be one of {EXECUTORS}, got {executor!r}")
        if executor == "processes" and not fork_available():
            raise ValueError(
                "decode executor 'processes' needs the fork start method, which "
                "this platform lacks; use 'threads'"
            )
        self.load = load
        self.depth = int(depth)
        self.workers = int(workers) if workers is not None else default_workers()
        if self.workers < 1:
            raise ValueError(f"decode workers must be >= 1, got {workers}")
        self.executor = (
            ("processes" if fork_available() else "threads") if executor == "auto" else executor
        )
        self._threads: ThreadPoolExecutor | None = None  # on-demand decoding outside a stream
        self._ahead: Executor | None = None  # the pool of the current stream
        # key -> (future, number of scheduled batches that named it)
        self._pending: dict[str, tuple[Future, int]] = {}
        self._reserved: dict[int, list[str]] = {}
        self.scheduled_ahead = 0  # images handed to the pool by the lookahead
        self.decoded_now = 0  # images decoded on demand, the scored batch waiting for them
        self.wait_seconds = 0.0  # time the caller spent waiting for pixels (decode not hidden)

    def settings(self) -> dict[str, Any]:
        """What the run card records: lookahead in batches, workers and their kind."""
        return {
            "prefetch_batches": self.depth,
            "decode_workers": self.workers,
            "decode_executor": self.executor,
        }

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="chexbench-decode"
            )
        return self._threads

    def _open_pool(self) -> Executor:
        if self.executor == "threads":
            return self._thread_pool()
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(self.load, os.getpid()),
        )

    def _submit(self, image: Any) -> Future:
        if self._ahead is None or self.executor == "threads":
            return self._thread_pool().submit(self.load, image)
        return self._ahead.submit(_load_in_worker, image)

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
        if not batches:
            return
        scheduled = 0
        own_pool = self._ahead is None
        if own_pool:
            self._ahead = self._open_pool()
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
            if own_pool:
                pool, self._ahead = self._ahead, None
                if pool is not self._threads:
                    pool.shutdown(wait=True, cancel_futures=True)

    def _reserve(self, batch_index: int, images: Iterable[tuple[str, Any]]) -> None:
        keys: list[str] = []
        for key, image in images:
            if key in keys:
                continue
            keys.append(key)
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = (self._submit(image), 1)
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
        decoded now (in parallel with each other). A decoding error is raised here, for the
        batch that needs the image, as it would be without the prefetch."""
        futures: list[Future] = []
        for key, image in images:
            entry = self._pending.get(key)
            if entry is not None and not entry[0].cancelled():
                futures.append(entry[0])
            else:
                futures.append(self._submit(image))
                self.decoded_now += 1
        start = time.perf_counter()
        wait(futures)
        self.wait_seconds += time.perf_counter() - start
        return [_WireTensor.back(f.result()) for f in futures]

    def close(self) -> None:
        """Drop everything scheduled and stop the threads."""
        for future, _ in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._reserved.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)  # a running decode ends
            self._threads = None
