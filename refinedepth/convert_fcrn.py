"""Deprecated alias of :mod:`refinedepth.backbones.fcrn_laina` (the Laina .npy converter moved
next to the FCRN backbone). Kept for one release: import from ``refinedepth.backbones.fcrn_laina``.
"""

from refinedepth.backbones.fcrn_laina import (  # noqa: F401
    UP_IDS,
    LainaEntry,
    convert_fcrn_tf,
    convert_laina_dict,
    laina_entries,
    load_laina_npy,
)

__all__ = ["LainaEntry", "laina_entries", "load_laina_npy", "convert_laina_dict", "convert_fcrn_tf", "UP_IDS"]
