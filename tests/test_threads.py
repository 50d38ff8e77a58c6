"""CPU threads: how many the model gets, and how they wait, when the user does not say (emosphere.threads)."""

import math
import os

import pytest
import torch
from conftest import tiny_model

from emosphere import load, threads
from emosphere.cli import main


@pytest.mark.parametrize(
    "cpus, affinity, quota, expected",
    [(4, 4, math.inf, None), (4, 2, math.inf, 2), (4, 4, 2.5, 2), (4, 4, 0.5, 1), (8, 3, 2.0, 2)],
)
def test_the_engine_s_thread_count_unless_this_process_may_use_fewer_cores(
    monkeypatch, cpus, affinity, quota, expected
):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(threads, "quota", lambda: quota)
    count, why = threads.default_threads()
    assert count == expected and ("usable here" in why) == (expected is not None)


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
    monkeypatch.setattr(load, "default_threads", lambda: (1, "1 of the 2 CPUs are usable here"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level("INFO", logger="emosphere"):
            load.load_backend(model_dir)
        assert torch.get_num_threads() == 1
        assert "CPU threads of the model: 1 (1 of the 2 CPUs are usable here; --threads to choose)" in caplog.text
        load.load_backend(model_dir, threads=2)  # a count given is used as given
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
