"""Worker process pools that end with their parent and stop cleanly on Ctrl-C."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def init_worker(parent_pid: int) -> None:
    """Leave Ctrl-C to the parent, which decides what the workers still do.

    On Linux a worker also ends with its parent (``parent_pid``, which may be 1
    in a container), so a killed run leaves no idle workers behind.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(1)


def worker_pool(workers: int, mp_context: Any = None) -> ProcessPoolExecutor:
    """A process pool whose workers ignore Ctrl-C and end with this process."""
    return ProcessPoolExecutor(
        workers, mp_context=mp_context, initializer=init_worker, initargs=(os.getpid(),)
    )


def results_as_completed(
    pool: ProcessPoolExecutor, fn: Callable[..., Any], args: Iterable[tuple], limit: int
) -> Iterator[Any]:
    """``fn(*a)`` for every ``a`` of ``args``, yielded as they finish.

    At most ``limit`` calls are submitted at a time (the pool's workers), so
    when the caller stops, no call beyond those already running has started.
    """
    todo = iter(args)
    pending: set[Future] = {pool.submit(fn, *a) for a in itertools.islice(todo, limit)}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            pending |= {pool.submit(fn, *a) for a in itertools.islice(todo, 1)}
            yield future.result()


def stop_pool(pool: ProcessPoolExecutor, *, finish: bool) -> None:
    """Shut ``pool`` down after an error or Ctrl-C, starting nothing new.

    With ``finish`` the workers complete the calls they hold (a shard they
    write, say) unless Ctrl-C comes again, which ends them at once; without,
    they are ended at once.
    """
    try:
        if finish:
            pool.shutdown(wait=True, cancel_futures=True)
            return
    except KeyboardInterrupt:
        _terminate(pool)
        raise
    _terminate(pool)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the workers now.  A worker ended while it sends a result leaves part of a
    message in the result pipe, which the pool's manager thread would wait on for
    ever (and with it the interpreter's exit): once the workers are gone, this
    process's own end of that pipe is closed too, so the read fails instead."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()
    pool.shutdown(wait=False, cancel_futures=True)
