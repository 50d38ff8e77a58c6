"""CPU threads: how many the model gets, and how they wait, when the user does not say (emosphere.threads)."""

import math
import os

import pytest
import torch
from conftest import tiny_model

from emosphere import load, threads
from emosphere.cli import main


@pytest.mark.parametrize(
    "idle, quota, expected",
    [(0.2, math.inf, 1), (1.4, math.inf, 1), (2.6, math.inf, 3), (4.0, math.inf, 4), (4.0, 2.0, 2), (None, 3.0, 3)],
)
def test_the_model_gets_the_cores_that_are_idle(monkeypatch, idle, quota, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(threads, "quota", lambda: quota)
    monkeypatch.setattr(threads, "idle_cores", lambda cpus: idle)
    count, why = threads.default_threads()
    assert count == expected and ("idle" in why) == (idle is not None)


def test_idle_cores_are_measured_among_the_usable_ones():
    cpus = threads.usable_cpus()
    idle = threads.idle_cores(cpus, seconds=0.05)
    assert idle is None or 0 <= idle <= len(cpus)


def test_the_command_makes_openmp_threads_wait_passively_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_model_loaded_without_a_thread_count_gets_the_default_and_says_so(tmp_path, monkeypatch, caplog):
    model_dir = tiny_model().save_pretrained(tmp_path / "model")
    monkeypatch.setattr(load, "default_threads", lambda: (1, "0.3 of 2 usable core(s) idle"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level("INFO", logger="emosphere"):
            load.load_backend(model_dir)
        assert torch.get_num_threads() == 1
        assert "1 CPU thread(s) for the model: 0.3 of 2 usable core(s) idle (--threads to choose)" in caplog.text
        load.load_backend(model_dir, threads=2)  # a count given is used as given
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
