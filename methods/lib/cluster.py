"""Dask for the sweeps and scans that outgrow one process (``--workers N``, ``--scheduler ADDRESS``).

Dask (``dask.distributed``) is an optional extra, ``pip install -e ".[distributed]"``: it is
imported only here and only when a cluster is asked for, so ``import minigrad``, ``import
methods`` and every serial path run without it.

* :func:`connect` gives a ``distributed.Client``: on a ``LocalCluster`` of N worker processes
  (one task at a time each, its kernels and BLAS given ``cores // N`` threads through
  :data:`THREAD_VARIABLES`, listening on 127.0.0.1 only), or on an existing cluster's scheduler;
* :func:`worker_model` loads a model once per worker process, by name: from its memory-mapped
  safetensors (``fashion-vgg``, converted checkpoints, files), or rebuilt from
  ``minigrad.manual_seed(seed)`` for the ``-random`` models, so every worker holds the model the
  command line would have loaded;
* :func:`as_completed` yields futures as they finish. Dask re-runs the tasks of a worker that
  dies (its nanny starts a new one) and retries a failed task as often as ``submit`` allowed.
"""

import contextlib
import os

__all__ = ["THREAD_VARIABLES", "as_completed", "connect", "local_threads", "require_distributed", "worker_model"]

#: The environment variables that set the kernels' and BLAS's thread counts. A result's last bits
#: can depend on them (BLAS splits some products by thread), so a run on a worker is bit for bit
#: the serial run made with the same values.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_MODELS = {}


def require_distributed():
    """The ``distributed`` package, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f'--workers and --scheduler need Dask: pip install "dask[distributed]" '
                          f'(or pip install -e ".[distributed]") ({error})') from error
    return distributed


@contextlib.contextmanager
def connect(workers=None, scheduler=None):
    """A ``distributed.Client`` for the block: on the cluster whose scheduler is at ``scheduler``
    ("tcp://host:8786"), else on a new ``LocalCluster`` of ``workers`` processes, closed after."""
    distributed = require_distributed()
    if scheduler:
        with distributed.Client(scheduler) as client:
            yield client
        return
    if not workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    env = dict.fromkeys(THREAD_VARIABLES, str(local_threads(workers)))
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, env=env) as cluster, distributed.Client(cluster) as client:
        yield client


def local_threads(workers):
    """Threads per worker of a local cluster of ``workers`` processes: this machine's cores shared out."""
    return max(1, (os.cpu_count() or 1) // workers)


def as_completed(futures):
    """The futures in the order they finish."""
    return require_distributed().as_completed(futures)


def worker_model(name, seed=0):
    """The model ``name`` (what ``minigrad.models.load`` takes), loaded once per process after
    ``minigrad.manual_seed(seed)``."""
    if (name, seed) not in _MODELS:
        import minigrad
        from minigrad import models

        minigrad.manual_seed(seed)
        _MODELS[(name, seed)] = models.load(name)
    return _MODELS[(name, seed)]
