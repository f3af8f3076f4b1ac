"""Device plumbing shared by training and prediction: float32 math, host↔device copies, sizes.

- :func:`configure_float32_math` is the one place that sets
  ``torch.set_float32_matmul_precision``: ``"high"`` (TF32 tensor cores for float32 matrix
  products on Ampere and newer cards). Training runs in fp32 or mixed precision where TF32's
  10-bit mantissa is far below the gradient noise; prediction stores affinities as uint8
  (steps of 1/255 ≈ 3.9e-3) or float16, both coarser than TF32's ~1e-3 relative rounding of a
  product, and convolutions already use TF32 through cuDNN by default
  (``torch.backends.cudnn.allow_tf32``). Lightning warns when the precision is left unset on
  tensor-core cards; setting it here makes the choice explicit. Tests that compare two CUDA
  runs to float noise set :data:`FLOAT32_MATMUL_PRECISION` to ``"highest"`` and disable
  cuDNN's TF32 themselves.
- :func:`to_device` / :func:`to_host` copy through pinned memory with non-blocking copies on
  CUDA (the host waits only when it needs the data), plain copies on the CPU.
- :func:`batch_for_memory` / :func:`probe_bytes_per_item` size batches from free GPU memory.
- :func:`auto_workers` is the loader worker count of ``num_workers: auto``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

FLOAT32_MATMUL_PRECISION = "high"
CPU_BATCH_SIZE = 2  # windows per forward pass on the CPU: larger batches only cost memory there
MAX_WORKERS = 8


def configure_float32_math() -> None:
    """Set ``torch.set_float32_matmul_precision`` to :data:`FLOAT32_MATMUL_PRECISION` (see module doc)."""
    torch.set_float32_matmul_precision(FLOAT32_MATMUL_PRECISION)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; on CUDA through pinned memory, without blocking the host."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_host(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """CPU copies of ``tensors``: on CUDA into pinned buffers, non-blocking, then one wait."""
    if not tensors or tensors[0].device.type != "cuda":
        return tuple(t.cpu() for t in tensors)
    copies = []
    for t in tensors:
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        copies.append(host)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return tuple(copies)


def batch_for_memory(free_bytes: int, bytes_per_item: float, fraction: float = 0.5, cap: int = 256) -> int:
    """Items per batch that use at most ``fraction`` of ``free_bytes``: at least 1, at most ``cap``."""
    if bytes_per_item <= 0:
        return cap
    return max(1, min(cap, int(fraction * free_bytes / bytes_per_item)))


def probe_bytes_per_item(run: Callable[[int], object], device: torch.device, n: int = 4) -> float:
    """Peak CUDA memory per item of ``run(n)`` (a forward pass over ``n`` items), in bytes."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run(n)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / n


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def auto_workers(cuda: bool, cpus: int | None = None, devices: int = 1) -> int:
    """Loader workers of ``num_workers: auto`` for a job of ``cpus`` CPUs (its threads) and ``devices`` GPUs.

    Without CUDA the model trains on the same cores the workers would use, so patches are
    made in the training process (0 workers). With CUDA: the CPUs per device less one for the
    training process, at most :data:`MAX_WORKERS` (patch reads are cheap and augmentation
    runs batched on the GPU, so more workers only cost memory).
    """
    if not cuda:
        return 0
    per_device = (cpus if cpus is not None else available_cpus()) // max(devices, 1)
    return max(0, min(MAX_WORKERS, per_device - 1))
