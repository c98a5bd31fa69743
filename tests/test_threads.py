"""The trainer's thread governor: every core on an idle machine, one fewer per busy core, a fixed
count when asked, and a real measurement of another process's load."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from training.threads import ThreadConfig, ThreadGovernor


@pytest.mark.parametrize(
    ("cores", "others", "expected"),
    [(2, 0.0, 2), (2, 0.2, 2), (2, 0.5, 1), (2, 1.0, 1), (2, 2.0, 1), (8, 0.0, 8), (8, 1.0, 7), (8, 3.5, 4)],
)
def test_choose_leaves_a_core_per_busy_core(cores, others, expected):
    assert ThreadGovernor(ThreadConfig(), cores=cores).choose(others) == expected


def test_a_fixed_count_is_kept():
    import torch

    before = torch.get_num_threads()
    try:
        gov = ThreadGovernor(ThreadConfig(threads=1), cores=8)
        assert gov.start() == 1 and gov.choose(0.0) == 1 and gov.tick(force=True) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_another_busy_process_is_seen():
    """A process spinning on one core is measured as about one busy core (this test's own work is
    not counted), and the governor gives a core back."""
    import torch

    before = torch.get_num_threads()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        gov = ThreadGovernor(ThreadConfig(interval_s=0.0), cores=2)
        gov.start()
        time.sleep(1.0)
        assert gov.tick(force=True) == 1
        assert gov.history[-1][0] > 0.5, gov.history
    finally:
        spin.kill()
        spin.wait()
        torch.set_num_threads(before)


def test_governed_restores_the_count_and_stops_governing():
    import torch

    from training import threads

    before = torch.get_num_threads()
    with threads.governed(ThreadConfig(threads=1)) as gov:
        assert threads.active() is gov and torch.get_num_threads() == 1
    assert threads.active() is None and threads.tick() == 0
    assert torch.get_num_threads() == before
