"""One torch thread for tests of tiny models.

On a shared 2-core machine, intra-op threads wait at OpenMP barriers for descheduled peers (steps
10-70x slower), and one thread also makes CPU results bit-reproducible across runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Autouse in every module that imports it: each test runs on one torch thread."""
    with torch_threads(1):
        yield
