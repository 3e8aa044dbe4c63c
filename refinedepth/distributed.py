"""Moved to :mod:`refinedepth.training.distributed`; this alias stays for one release."""

from .training.distributed import (  # noqa: F401
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    dist_info,
    init_distributed,
    launched_by_torchrun,
)
