"""A process's place in a distributed run: torchrun's variables, its share, its device and threads."""

import pytest

from emosphere.errors import UserError
from emosphere.ranks import Ranks


def test_torchrun_variables_and_defaults():
    assert Ranks.from_env({}) == Ranks(0, 1, 0, 1) and not Ranks.from_env({}).distributed
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert Ranks.from_env(env) == Ranks(5, 8, 1, 4)
    with pytest.raises(UserError, match="inconsistent"):
        Ranks.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_shares_are_dealt_in_turn_and_cover_everything_once():
    shares = [[i for i in range(10) if Ranks(rank, 3).mine(i)] for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_each_process_gets_its_gpu_and_its_cores(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert Ranks(5, 8, 1, 4).device("cuda") == "cuda:1"
    assert Ranks(0, 1).device("cuda") == "cuda" and Ranks(5, 8, 1, 4).device("cuda:3") == "cuda:3"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a launcher that shows each process one GPU
    assert Ranks(5, 8, 1, 4).device("cuda") == "cuda:0" and Ranks(5, 8, 1, 4).device("cpu") == "cpu"
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert Ranks(5, 8, 1, 4).threads() == 4 and Ranks(0, 2, 0, 32).threads() == 1 and Ranks().threads() is None


def test_one_process_needs_no_process_group():
    with Ranks().joined() as ranks:
        ranks.barrier()
        assert ranks.broadcast(7) == 7 and ranks.sum([1.0, 2.5]) == [1.0, 2.5]
