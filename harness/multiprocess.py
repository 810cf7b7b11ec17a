"""Data-parallel `chexbench run`: N processes each score a shard of the items, one results file.

lm-eval already shards each task's docs across ranks (doc i goes to rank i mod N) when the LM
reports `rank`/`world_size`, and gathers the logged samples and raw metrics to rank 0. What it
leaves to us, and what this module does:

- launching: `--num-processes N` runs the resolved run spec under `accelerate launch` (torch's
  elastic launcher underneath), which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR;
- one process group for CPU tensors (gloo) and, when GPUs exist, CUDA tensors (NCCL);
- one GPU per process (`cuda:<local_rank>`), or the CPU when the user asks for it;
- one journal per rank (`journal.rank<k>.jsonl`): an append log must have a single writer. Every
  rank reads all journals of the run folder first, so a run resumes whatever the process count
  was when it stopped. Rank 0 holds the scoring folder's lock for all ranks (`agree`), so ranks
  never wait on each other while another run on the same folder is refused on every rank;
- rank 0 must build every sample row, which needs the full score (token counts, greedy flags) of
  requests other ranks scored: after lm-eval's own gathers, each rank sends its score store and
  engine counters to rank 0.

Rank 0 then builds the rows sorted by doc id and runs the seeded bootstrap over all of them, so
the results equal a single-process run's.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.errors import UserError, one_line
from harness.io import atomic_write_json, read_journal

SINGLE_JOURNAL = "journal.jsonl"
# A rank that finishes its shard early waits in the final gather for the slowest one; that wait
# may be hours for a large model, far beyond torch's default 10-30 minute collective timeout.
COLLECTIVE_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class DataParallel:
    """Where this process sits in a data-parallel run (rank 0 of 1 when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DataParallel:
        """Read the launcher's environment and join the process group (once per process)."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        dp = cls(
            rank=int(os.environ["RANK"]),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
        )
        dp._init_process_group()
        return dp

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def _init_process_group(self) -> None:
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return
        backend = "gloo"
        if torch.cuda.is_available():
            # Object gathers go over gloo (CPU); tensors lm-eval puts on a GPU go over NCCL.
            backend = "cpu:gloo,cuda:nccl"
            if self.local_rank < torch.cuda.device_count():
                torch.cuda.set_device(self.local_rank)
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_destroy_process_group)

    # ----- what the runner asks -------------------------------------------------------------
    def journal_path(self, run_dir: Path) -> Path:
        return run_dir / (f"journal.rank{self.rank}.jsonl" if self.active else SINGLE_JOURNAL)

    def model_args(self, adapter_name: str, model_args: dict[str, Any]) -> dict[str, Any]:
        """The adapter's arguments on this rank: its own GPU, or the CPU when asked for.

        Sharding one model over GPUs (`device_map`) and running one model per GPU are
        alternatives: with both, every process would spread its copy over all the GPUs.
        """
        if not self.active:
            return dict(model_args)
        if model_args.get("device_map") not in (None, ""):
            raise UserError(
                "device_map shards ONE model over the GPUs of this machine; --num-processes runs "
                "one copy of the model per GPU. Use one or the other: drop device_map, or run with "
                "--num-processes 1 (see docs/scaling.md)."
            )
        import torch

        device = str(model_args.get("device") or "auto")
        if device.startswith("cpu") or not torch.cuda.is_available():
            if device.startswith("cuda"):
                raise UserError(f"device={device} but this machine has no CUDA GPU")
            return dict(model_args)
        if device not in ("auto", "cuda"):
            raise UserError(
                f"device={device} would put all {self.world_size} processes on one GPU; drop "
                "device= (each process takes cuda:<local rank>) or set CUDA_VISIBLE_DEVICES."
            )
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"{self.world_size} processes on this machine but only "
                f"{torch.cuda.device_count()} GPU(s) visible: use --num-processes "
                f"{torch.cuda.device_count()} or fewer, or device=cpu in --model-args."
            )
        if "device" in _init_parameters(adapter_name):
            return {**model_args, "device": f"cuda:{self.local_rank}"}
        return dict(model_args)  # torch.cuda.set_device already made "cuda" this rank's GPU

    def check_shards(self, spec: Any, tasks: list[str]) -> None:
        """lm-eval fails on a rank that gets no doc of a task, so each task needs N docs."""
        if not self.active:
            return
        counts = docs_per_task(
            tasks, spec.data, spec.image_root, spec.image_map, spec.skip_missing, spec.limit
        )
        small = {t: n for t, n in counts.items() if n < self.world_size}
        if small:
            listed = ", ".join(f"{t} ({n})" for t, n in small.items())
            raise UserError(
                f"--num-processes {self.world_size} needs at least "
                f"{self.world_size} items per task; these have fewer: {listed}. "
                "Use fewer processes or run these tasks separately."
            )

    def agree(self, action: Callable[[], Any]) -> None:
        """Run `action` on rank 0 only (taking the folder lock); when it fails, every rank
        raises its error, so all ranks stop together instead of waiting for rank 0."""
        if not self.active:
            action()
            return
        import torch.distributed as dist

        failure: BaseException | None = None
        if self.rank == 0:
            try:
                action()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the others
                failure = exc
        message = [None if failure is None else one_line(failure)]
        dist.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise UserError(message[0])

    def preload(self, store: Any, run_dir: Path) -> int:
        """Load the other journals of the run folder into this rank's store (read only).

        Returns how many entries came from them. Another rank may be writing a journal (or
        have been killed mid-record): `read_journal` skips what does not parse.
        """
        own = self.journal_path(run_dir)
        added = 0
        for path in sorted(run_dir.glob("journal*.jsonl")):
            if path == own:
                continue
            for row in read_journal(path):
                if row["key"] not in store.done:
                    store.done[row["key"]] = row["value"]
                    added += 1
        return added

    def collect(self, lm: Any) -> None:
        """Every rank sends its scores and counters to rank 0 (a collective: all ranks call it)."""
        if not self.active:
            return
        parts = lm.gather_object((lm.store.done, lm.stats.as_dict()), dst=0)
        if self.rank != 0:
            return
        totals: dict[str, int] = {}
        for rank, (done, stats) in enumerate(parts):
            if rank != 0:
                for key, value in done.items():
                    lm.store.done.setdefault(key, value)
            for name, value in stats.items():
                totals[name] = totals.get(name, 0) + int(value)
        for name, value in totals.items():
            setattr(lm.stats, name, value)


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _init_parameters(adapter_name: str) -> set[str]:
    from model_adapters.registry import get_adapter_class

    return set(inspect.signature(get_adapter_class(adapter_name).__init__).parameters)


# ----- launching ---------------------------------------------------------------------------
def free_port() -> int:
    """A free TCP port for the rendezvous, so concurrent runs do not collide on 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(num_processes: int, spec_file: Path) -> list[str]:
    """`accelerate launch` of `python -m harness.multiprocess SPEC` with N processes here.

    `--multi_gpu` selects accelerate's torch-elastic launcher, which also works without GPUs (the
    processes then use gloo on the CPU). Each CPU process gets an equal share of the cores.
    """
    import torch

    threads = max(1, (os.cpu_count() or 1) // num_processes)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    if not torch.cuda.is_available():
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    return [*cmd, "-m", "harness.multiprocess", str(spec_file)]


def launch_data_parallel(spec: Any, num_processes: int) -> int:
    """Run `spec` (a `harness.runner.RunSpec`) on N ranks, or as one of them in place.

    The ranks read the resolved spec from a file rather than a command line, so every rank runs
    exactly what the user's command resolved to (and the run card records it as typed).
    """
    from harness.runner import check_before_launch

    if num_processes < 1:
        raise UserError("--num-processes must be at least 1")
    # A world of one is no launch (single-process DeepSpeed leaves WORLD_SIZE=1 behind, as
    # DataParallel.from_env also reads it).
    launched = int(os.environ.get("WORLD_SIZE", "0") or 0)
    if launched > 1:
        if launched != num_processes:
            raise UserError(
                f"--num-processes {num_processes} but the launcher started "
                f"{launched} processes; drop --num-processes when launching by hand"
            )
        return _run_rank(spec)
    check_before_launch(spec)  # one line here rather than N failing ranks
    with tempfile.TemporaryDirectory(prefix="chexbench-ranks-") as tmp:
        spec_file = Path(tmp) / "spec.json"
        atomic_write_json(spec_file, spec.to_json())
        cmd = launch_command(num_processes, spec_file)
        print(f"launching {num_processes} processes: {' '.join(cmd[2:])}", file=sys.stderr)
        return subprocess.call(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run_rank(spec: Any) -> int:
    from harness.runner import run_benchmark

    run_benchmark(spec)
    return 0


def main(argv: list[str] | None = None) -> int:
    """One rank of a launched run: `python -m harness.multiprocess SPEC.json`."""
    from harness.runner import RunSpec

    argv = sys.argv[1:] if argv is None else argv
    spec = RunSpec.from_json(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    try:
        return _run_rank(spec)
    except UserError as exc:  # as harness.cli does: one line, exit 2
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def docs_per_task(
    tasks: list[str],
    data: str,
    image_root: str | None,
    image_map: str | None,
    skip_missing: bool,
    limit: int | None,
) -> dict[str, int]:
    """How many docs lm-eval will shard per task (after exclusions and --limit)."""
    from harness.docs import build_docs

    counts = {}
    for task in tasks:
        n = len(build_docs(task, data, image_root, image_map, skip_missing)[0])
        counts[task] = min(n, limit) if limit else n
    return counts


if __name__ == "__main__":
    sys.exit(main())
