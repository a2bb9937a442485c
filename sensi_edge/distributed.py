"""The process group a compress run is part of, when launched by torchrun or ``accelerate launch``.

Both launchers start N copies of the same command and tell each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; multi-node rendezvous is theirs). sensi-edge does not launch
anything itself: it reads that environment, joins the group (gloo on CPU, NCCL on CUDA), and the
Hugging Face Trainer -- which reads the same environment -- trains as DDP in the same group.

What the pipeline asks of the group is small and lives here: am I the main process (rank 0, the only
one that writes outside checkpoints), wait for everyone (``barrier``), sum arrays over ranks
(``all_sum``: sensitivity statistics split over calibration batches), and hear rank 0's verdict
(``from_main``: a setup check that only rank 0 can make, such as "this output folder is taken").
Outside a launcher every call is a no-op on a world of one, so single-process code pays nothing.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np

from .errors import SensiEdgeError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the launcher's environment (a world of one without a launcher)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise SensiEdgeError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc}); launch with torchrun or "
                             "accelerate launch, or unset them") from None
    if size < 1 or not 0 <= rank < size:
        raise SensiEdgeError(f"RANK={rank} does not fit WORLD_SIZE={size}; launch with torchrun or accelerate launch")
    return World(rank, size, local)


def device_for(w: World) -> str:
    """cuda:LOCAL_RANK where a GPU is visible (one GPU per process), else cpu."""
    import torch

    return f"cuda:{w.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"


def join() -> World:
    """Join the launcher's process group (once); the Trainer later finds it initialised and uses it."""
    w = world()
    if not w.distributed:
        return w
    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        # accelerate would call the CPU "cpu:<local rank>", and the Trainer resumes a multi-process run by
        # loading the optimizer with map_location=that device, which torch.load refuses ("don't know how to
        # restore data location ... cpu:0"); a plain "cpu" device is what every rank has anyway
        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(device_for(w))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_leave)
    return w


def _leave() -> None:
    """Tear the group down before the interpreter does. Left to process exit, gloo's worker threads are
    destroyed while still joinable and the C++ runtime aborts the process ("terminate called without an
    active exception", SIGABRT) -- about one run in three of a short job on this machine -- which the
    launcher reports as a failed run although every rank finished its work. No barrier here: a rank that
    leaves on an error must not wait for peers that may never arrive."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def all_sum(values: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks, in float64 (the sums the sensitivity statistics are made of)."""
    values = np.asarray(values, dtype=np.float64)
    if not _active():
        return values
    import torch
    import torch.distributed as dist

    t = torch.from_numpy(values.copy())
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def from_main(value):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not _active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def refuse_launcher(command: str) -> None:
    """export / evaluate / bench / bundle / report write one output from one process: under a launcher they
    would be N copies racing on the same folder, so they stop before doing anything."""
    w = world()
    if w.distributed:
        raise SensiEdgeError(f"`{command}` runs in one process, but this is rank {w.rank} of {w.size} (torchrun / "
                             f"accelerate launch); run `sensi-edge {command} ...` directly, without the launcher")
