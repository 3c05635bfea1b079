"""Run one task per item in worker processes of one torch thread each.

Stage 2 evaluates every encoder independently: small CPU-bound models (width-0.25 encoders,
a decoder on 32x32 images) that use one core far better than they share several, so two
processes of one thread each on a 2-core machine finish about twice as fast as one process
of two threads. Workers are *spawned* (not forked: a fork after torch has started its thread
pools can deadlock) and receive the task once, with its shared data, at start-up.

``jobs = 1`` runs in this process, in order (no start-up cost; the simplest to debug).
The task itself must record its result (stage 2 writes each encoder's file as soon as it is
done), so that results of finished items survive a failure of another one: on the first
failure, pending items are cancelled, running ones finish, and the error is raised (the same
on Ctrl-C when only this process gets it; from a terminal, the workers stop at once too).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")

_task: Callable | None = None  # a worker's task, set once by _start


def _start(task: Callable, threads: int) -> None:
    global _task
    torch.set_num_threads(threads)
    _task = task


def _run(item: object) -> object:
    assert _task is not None, "worker started without its task"
    return _task(item)


class ItemFailed(RuntimeError):
    """An item's task raised; ``item`` names it, ``__cause__`` is the original error."""

    def __init__(self, item: object, error: BaseException) -> None:
        super().__init__(f"{error.__class__.__name__}: {error}")
        self.item, self.error = item, error


def run_all(
    task: Callable[[Item], Result], items: Sequence[Item], jobs: int = 1, threads: int = 1,
    on_result: Callable[[Item, Result], None] | None = None,
) -> list[Result]:
    """``[task(item) for item in items]`` in ``jobs`` processes of ``threads`` torch threads;
    ``on_result`` sees each result as it arrives. ``task`` must be picklable when ``jobs > 1``
    (a module-level function, or a ``functools.partial`` of one). Raises :class:`ItemFailed`."""
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs={jobs} and threads={threads} must be at least 1")
    results: dict[int, Result] = {}
    if jobs == 1 or len(items) <= 1:
        torch.set_num_threads(threads)
        for i, item in enumerate(items):
            try:
                results[i] = task(item)
            except Exception as err:
                raise ItemFailed(item, err) from err
            if on_result is not None:
                on_result(item, results[i])
        return [results[i] for i in range(len(items))]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(items)), mp_context=context, initializer=_start, initargs=(task, threads)) as pool:
        futures: dict[Future, int] = {pool.submit(_run, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in sorted(done, key=futures.__getitem__):  # reported in item order within a batch
                    i = futures[future]
                    error = future.exception()
                    if error is not None:
                        raise ItemFailed(items[i], error) from error
                    results[i] = future.result()
                    if on_result is not None:
                        on_result(items[i], results[i])
        except BaseException:  # a failure, or Ctrl-C / an error in on_result
            for other in pending:
                other.cancel()  # queued ones never start; running ones finish (and record themselves)
            raise
    return [results[i] for i in range(len(items))]
