"""Thread budgets: the environment a job gets and the limits applied inside a process."""

import pytest
import torch

from pipeline_lib.threads import THREAD_VARIABLES, limit_threads, thread_environment, wait_passively


def test_thread_environment_sets_every_pool_and_a_passive_wait_unless_the_user_chose():
    env = thread_environment(3, {})
    assert env == {**dict.fromkeys(THREAD_VARIABLES, "3"), "OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_environment(1, {"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(ValueError, match="at least 1"):
        thread_environment(0, {})


def test_wait_passively_keeps_a_user_setting():
    environ: dict[str, str] = {}
    wait_passively(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    wait_passively(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_limit_threads_sets_the_environment_and_torch(monkeypatch, torch_one_thread):
    for name in (*THREAD_VARIABLES, "OMP_WAIT_POLICY"):
        monkeypatch.setenv(name, "7")  # restored after the test
    limit_threads(2)
    import os

    assert all(os.environ[name] == "2" for name in THREAD_VARIABLES)
    assert os.environ["OMP_WAIT_POLICY"] == "7"  # the user's choice stays
    assert torch.get_num_threads() == 2


def test_limit_threads_before_torch_is_loaded_sets_only_the_environment(monkeypatch):
    import os
    import sys

    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "7")
    monkeypatch.delitem(sys.modules, "torch")  # as in a job that has not imported torch yet
    before = torch.get_num_threads()
    limit_threads(3)
    assert all(os.environ[name] == "3" for name in THREAD_VARIABLES)
    assert torch.get_num_threads() == before


def test_a_loader_worker_computes_on_one_thread(monkeypatch, torch_one_thread):
    import os

    from pipeline_lib.threads import limit_worker_threads

    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "7")
    torch.set_num_threads(2)
    limit_worker_threads(0)
    assert all(os.environ[name] == "1" for name in THREAD_VARIABLES)
    assert torch.get_num_threads() == 1
