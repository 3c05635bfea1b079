"""The process-tree memory sampler: children count, gone processes count 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from crlsc_fl.memory import MemorySampler, physical_memory, system_used, tree_memory

HOLD = "import sys, time; x = bytearray({size}); x[::4096] = b'1' * len(x[::4096]); print('ready', flush=True); time.sleep(30)"


@pytest.fixture
def child() -> subprocess.Popen[str]:
    """A child process holding 200 MiB of touched memory until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(size=200 * 2**20)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def test_tree_memory_includes_the_children(child: subprocess.Popen[str]) -> None:
    own = tree_memory(child.pid)
    assert own > 200 * 2**20
    assert tree_memory(os.getpid()) >= own  # the child is in this process's tree


def test_sampler_keeps_the_peak_after_the_child_is_gone(child: subprocess.Popen[str]) -> None:
    with MemorySampler(interval=0.05, keep_series=True) as sampler:
        time.sleep(0.2)
        child.kill()
        child.wait()
        time.sleep(0.2)
    assert sampler.peak_tree > 200 * 2**20
    assert sampler.series and sampler.series[-1][2] < sampler.peak_tree / 2**30  # the last sample is lower
    sampler.stop()  # stopping twice is harmless


def test_a_process_that_is_gone_measures_zero_and_bad_intervals_fail() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_memory(proc.pid) == 0
    with pytest.raises(ValueError, match="interval must be > 0"):
        MemorySampler(interval=0)


def test_system_memory_in_use_fits_in_the_installed_memory() -> None:
    assert 0 < system_used() < physical_memory()
    assert physical_memory() > 2**28  # any machine that runs the tests has more than 256 MiB
