"""Shared pytest set-up: a private data root for every unit test, so tests never touch
(or depend on) the user's ``data/`` and ``runs/`` folders. Notebook validation (nbval) runs
the notebooks against the real data root, where they build and cache the default catalog."""
from __future__ import annotations

import os
import signal

import pytest


@pytest.fixture(autouse=True)
def _private_data_root(request, tmp_path_factory, monkeypatch):
    if request.node.get_closest_marker("book") or request.path.suffix == ".ipynb":
        return
    root = tmp_path_factory.mktemp("mrlib")
    monkeypatch.setenv("MRLIB_DATA", str(root / "data"))
    monkeypatch.setenv("MRLIB_RUNS", str(root / "runs"))
    monkeypatch.delenv("MRLIB_RECORD", raising=False)


def pytest_configure(config):
    # Torch: deterministic, and no oversubscription of the 2-core CI machine.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # A shell that starts the tests in the background makes them ignore SIGINT, and so would
    # every program they start: the tests that press Ctrl-C on a program need the default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's small-tensor torch tests on one thread, restoring the setting after.

    One thread is as fast for small models on an idle machine and does not thrash on a busy
    2-core CI box (use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``).
    """
    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)
