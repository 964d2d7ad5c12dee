"""Running an experiment's independent tasks in parallel: in-process, a process pool, or dask.

Tasks are ``fn(item)`` calls with picklable module-level ``fn`` and small ``item`` tuples (each
carrying its own integer seed), so results do not depend on where or in which order they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm


def parallel_map(fn: Callable, items: Sequence, *, workers: int = 1, scheduler: str | None = None,
                 desc: str = "", progress: bool = True) -> list:
    """``[fn(x) for x in items]``, in order.

    * ``scheduler`` (an address such as ``"tcp://host:8786"``): submitted to that running
      dask.distributed cluster with ``Client(address).map``, gathered in order;
    * otherwise ``workers > 1``: a :class:`concurrent.futures.ProcessPoolExecutor`;
    * otherwise in this process.

    A tqdm bar (on stderr) counts finished tasks when ``progress`` is true.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    items = list(items)
    bar = tqdm(total=len(items), desc=desc or getattr(fn, "__name__", "tasks"), disable=not progress,
               leave=False, dynamic_ncols=True)
    try:
        if scheduler:
            return _dask_map(fn, items, scheduler, bar)
        if workers > 1 and len(items) > 1:
            with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
                futures = [pool.submit(fn, x) for x in items]
                out = []
                for fut in futures:
                    out.append(fut.result())
                    bar.update()
                return out
        out = []
        for x in items:
            out.append(fn(x))
            bar.update()
        return out
    finally:
        bar.close()


def connect(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` for the cluster at ``address``; ``ValueError`` (one line) when dask is
    not installed or nothing answers there within ``timeout`` seconds."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(f"--scheduler needs dask.distributed (pip install 'specot[dask]'): {exc}") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"--scheduler: cannot connect to {address} ({type(exc).__name__})") from None


def _dask_map(fn: Callable, items: list, address: str, bar) -> list:
    client = connect(address)
    try:
        futures = client.map(fn, items, pure=False)
        out = []
        for fut in futures:
            out.append(fut.result())
            bar.update()
        return out
    finally:
        client.close()
