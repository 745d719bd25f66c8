"""Data-parallel training over MPI (mpi4py), as in Horovod and torch DistributedDataParallel.

Every rank holds the whole model and takes its own slice of each global mini-batch. With the loss
L = (1/B) sum_i l_i over the global batch of B samples, rank r's share of the gradient is
(1/B) sum_{i in shard r} dl_i/dw, so each rank scales its upstream gradient by b_r / B, runs
backward, and one Allreduce (sum) over a flat buffer of all gradients gives every rank the
gradient of the single-process batch. Identical gradients and identical optimizer steps keep the
ranks' weights identical.

Launch with ``mpirun -np K cnnkit train ...`` (or ``srun``); install with ``pip install
'cnnkit[mpi]'``, which brings mpi4py and the MPICH wheel, or use Debian's ``mpich`` / ``openmpi``
packages and ``pip install mpi4py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from cnnkit.nn.module import Module, Parameter
from cnnkit.nn.norm import _BatchNorm

INSTALL_HINT = (
    "distributed training needs MPI: pip install 'cnnkit[mpi]' (mpi4py and MPICH from PyPI), "
    "or apt install mpich and pip install mpi4py"
)
DEFAULT_BUCKET_BYTES = 64 * 2**20
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


def require_mpi():
    """The mpi4py ``MPI`` module, or an ImportError saying in one line what to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from None
    return MPI


def launched_ranks() -> int:
    """How many processes the MPI launcher (mpirun, mpiexec, srun) started; 1 without one."""
    for variable in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit():
            return int(value)
    return 1


class Communicator:
    """A group of ranks (default MPI.COMM_WORLD): rank, size, sums and broadcasts of arrays."""

    def __init__(self, comm=None):
        self.MPI = require_mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints, logs and writes files."""
        return self.rank == 0

    def local_size(self) -> int:
        """Number of ranks on this machine (they share its cores)."""
        return self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_size()

    def allreduce_(self, buffer: np.ndarray) -> np.ndarray:
        """Sum a contiguous array over all ranks, in place; returns it."""
        if not buffer.flags.c_contiguous:
            raise ValueError("allreduce_ needs a C-contiguous array")
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def allreduce(self, array: np.ndarray) -> np.ndarray:
        """The sum of ``array`` over all ranks, as a new array."""
        return self.allreduce_(np.array(array, order="C", copy=True))

    def broadcast_(self, buffer: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``buffer`` on every rank with root's copy, in place; returns it."""
        if not buffer.flags.c_contiguous:
            raise ValueError("broadcast_ needs a C-contiguous array")
        self.comm.Bcast(buffer, root=root)
        return buffer

    def broadcast_object(self, value, root: int = 0):
        """Root's ``value`` (any picklable object) on every rank."""
        return self.comm.bcast(value, root=root)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        """Stop every rank of the job at once (MPI_Abort): for errors raised on one rank only."""
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size})"


def run_on_root(communicator: Communicator | None, action: Callable[[], object]):
    """Run ``action`` on rank 0 only and give every rank its result, or raise its error on all.

    For work with side effects that must happen once (creating the run directory): an error on
    rank 0 stops every rank with the same exception instead of leaving the others waiting. The
    exception gets ``collective = True``: every rank raised it, so rank 0 alone need report it.
    """
    if communicator is None:
        return action()
    result, error = None, None
    if communicator.is_root:
        try:
            result = action()
        except Exception as raised:  # noqa: BLE001 - re-raised on every rank below
            error = raised
    result, error = communicator.broadcast_object((result, error))
    if error is not None:
        error.collective = True
        raise error
    return result


class GradientAllreduce:
    """Sum every parameter's gradient over the ranks through one flat buffer.

    The gradients are copied into one contiguous array of the parameters' dtype, summed with one
    MPI Allreduce per bucket of at most ``bucket_bytes`` (one bucket for every zoo model but
    Xception), and copied back.
    """

    def __init__(
        self,
        communicator: Communicator,
        parameters: Sequence[Parameter],
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    ):
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes!r}")
        self.communicator = communicator
        self.parameters = list(parameters)
        dtypes = {p.dtype for p in self.parameters}
        if len(dtypes) > 1:
            raise ValueError(
                f"GradientAllreduce needs parameters of one dtype, got {sorted(map(str, dtypes))}"
            )
        dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        offsets = np.cumsum([0] + [p.size for p in self.parameters])
        self.slices = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        self.buffer = np.empty(int(offsets[-1]), dtype=dtype)
        per_bucket = max(1, bucket_bytes // dtype.itemsize)
        self.buckets = [
            slice(start, min(start + per_bucket, self.buffer.size))
            for start in range(0, self.buffer.size, per_bucket)
        ]

    @property
    def nbytes(self) -> int:
        """Bytes each rank contributes to the sum per step."""
        return self.buffer.nbytes

    def __call__(self) -> None:
        """Replace each gradient by its sum over all ranks."""
        for parameter, part in zip(self.parameters, self.slices, strict=True):
            self.buffer[part] = parameter.grad.reshape(-1)
        for bucket in self.buckets:
            self.communicator.allreduce_(self.buffer[bucket])
        for parameter, part in zip(self.parameters, self.slices, strict=True):
            parameter.grad[...] = self.buffer[part].reshape(parameter.shape)


def broadcast_state(communicator: Communicator, model: Module, root: int = 0) -> None:
    """Copy root's parameters and buffers to every rank, so that all ranks start identical."""
    for _, parameter in model.named_parameters():
        communicator.broadcast_(parameter.data, root)
    broadcast_buffers(communicator, model, root)


def broadcast_buffers(communicator: Communicator, model: Module, root: int = 0) -> None:
    """Copy root's buffers (batch-norm running statistics) to every rank."""
    for _, value in model.named_buffers():
        communicator.broadcast_(value, root)


def sync_batch_norm(model: Module, communicator: Communicator | None) -> int:
    """Make every batch-norm layer of ``model`` synchronized (SyncBatchNorm); returns how many.

    In training, their mean and variance are then taken over the global batch (sums reduced over
    all ranks), and backward reduces sum(dy) and sum(dy * xhat) the same way, so K ranks compute
    exactly what one process computes on the whole batch. ``None`` makes them local again.
    """
    allreduce = None if communicator is None else communicator.allreduce
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for layer in layers:
        layer.allreduce = allreduce
    return len(layers)


def split_generators(communicator: Communicator, model: Module) -> None:
    """Give each rank its own dropout stream: rank r jumps every model generator r times."""
    if communicator.rank == 0:
        return
    for _, rng in model.named_generators():
        rng.bit_generator.state = rng.bit_generator.jumped(communicator.rank).state
