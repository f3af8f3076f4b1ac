"""How many threads a job's numerical libraries may use: the ones Snakemake gave it, no more.

A job gets ``threads`` CPU threads (``resources.<rule>.threads``). Left alone, PyTorch, OpenMP
and the BLAS libraries size their pools by the machine's cores, every DataLoader worker
inherits the parent's settings, and OpenMP threads spin while they wait for work, burning CPU
that other jobs on a shared node need (``benchmarks/bench_threads.py`` measures it).

- :func:`wait_passively` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead
  of spinning) unless the user set it. OpenMP reads it once, when the library loads, so the
  workflow sets it in Snakemake's own environment (``workflow/rules/common.smk``), which every
  job inherits before it imports ``torch``; Snakemake itself exports the thread-count
  variables of each job (``OMP_NUM_THREADS`` … = the job's threads).
- :func:`thread_environment` is the environment of a process held to ``threads`` threads.
- :func:`limit_threads` applies a budget inside a running process: the variables (for child
  processes and libraries loaded later) and PyTorch's intra-op and inter-op pools.
- :func:`limit_worker_threads` is the ``worker_init_fn`` of DataLoaders: one thread per worker.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, MutableMapping

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def wait_passively(environ: MutableMapping[str, str] | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless it is set."""
    (os.environ if environ is None else environ).setdefault("OMP_WAIT_POLICY", "PASSIVE")


def thread_environment(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that hold a process and its children to ``threads`` threads.

    ``OMP_WAIT_POLICY`` is ``PASSIVE`` unless ``environ`` (default ``os.environ``) sets it.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    env = os.environ if environ is None else environ
    variables = dict.fromkeys(THREAD_VARIABLES, str(threads))
    variables["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY", "PASSIVE")
    return variables


def limit_threads(threads: int) -> None:
    """Hold this process (PyTorch's pools, when torch is loaded) and its future children to ``threads``."""
    os.environ.update(thread_environment(threads))
    torch = sys.modules.get("torch")
    if torch is None:
        return
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # possible only before the first inter-op parallel work
        torch.set_num_interop_threads(1)


def limit_worker_threads(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoaders: each worker process computes on one thread."""
    limit_threads(1)


__all__ = ["THREAD_VARIABLES", "limit_threads", "limit_worker_threads", "thread_environment", "wait_passively"]
