"""run_all: results in item order, in this process or in spawned workers; a failure names its item."""

from __future__ import annotations

import math

import pytest

from crlsc_fl.stage2.workers import ItemFailed, run_all


def test_results_in_item_order_and_each_reported_once() -> None:
    # (in workers: test_report's --jobs 2 run, which must give the numbers of --jobs 1)
    seen: list[float] = []
    items = [4.0, 9.0, 16.0, 25.0]
    assert run_all(math.sqrt, items, on_result=lambda item, result: seen.append(item)) == [2.0, 3.0, 4.0, 5.0]
    assert seen == items


def test_a_failure_stops_in_process_and_names_the_item() -> None:
    seen: list[float] = []
    with pytest.raises(ItemFailed, match="ValueError: math domain error") as info:
        run_all(math.sqrt, [4.0, -1.0, 9.0], on_result=lambda item, result: seen.append(item))
    assert info.value.item == -1.0 and isinstance(info.value.__cause__, ValueError)
    assert seen == [4.0]  # what finished before was reported; nothing after ran


def test_a_worker_failure_cancels_what_has_not_started() -> None:
    seen: list[float] = []
    with pytest.raises(ItemFailed, match="ValueError: math domain error") as info:
        run_all(math.sqrt, [-1.0] + [1.0] * 200, jobs=2, on_result=lambda item, result: seen.append(item))
    assert info.value.item == -1.0
    assert len(seen) < 200  # queued items were cancelled


@pytest.mark.parametrize("jobs, threads", [(0, 1), (1, 0)])
def test_bad_counts(jobs: int, threads: int) -> None:
    with pytest.raises(ValueError, match=f"jobs={jobs} and threads={threads} must be at least 1"):
        run_all(math.sqrt, [1.0], jobs=jobs, threads=threads)
