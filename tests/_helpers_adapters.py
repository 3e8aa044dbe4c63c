"""Tiny randomly initialised Hugging Face depth models saved to disk, for offline adapter tests.

Each builder writes ``config.json`` + ``model.safetensors`` (``save_pretrained``) and the family's
image-processor config into a directory, exactly what a user's local model directory holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# ViT/DINOv2 sizes small enough that building and running a model takes milliseconds.
_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 37,
}


def save_tiny_dpt(path: Path) -> Path:
    """DPT (MiDaS-style, relative disparity); square 32x32 input, mean/std 0.5."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        **_VIT,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
    )
    DPTForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def save_tiny_depth_anything(path: Path, kind: str = "relative", max_depth: int = 20, prompt: bool = False) -> Path:
    """Depth Anything (DINOv2 patch 14) with its processor: keep aspect ratio, multiple of 14.
    ``prompt``: the same network as Prompt Depth Anything, with that family's processor (its own
    default mean/std)."""
    import torch
    import transformers
    from transformers import Dinov2Config

    family = "PromptDepthAnything" if prompt else "DepthAnything"
    torch.manual_seed(0)
    backbone = Dinov2Config(
        **_VIT, image_size=28, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False
    )
    config = getattr(transformers, f"{family}Config")(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        patch_size=14,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type=kind,
        max_depth=max_depth,
    )
    getattr(transformers, f"{family}ForDepthEstimation")(config).save_pretrained(path)
    size = {"size": {"height": 28, "width": 42}, "keep_aspect_ratio": True, "ensure_multiple_of": 14}
    if prompt:
        transformers.PromptDepthAnythingImageProcessor(**size).save_pretrained(path)
    else:
        transformers.DPTImageProcessor(
            **size, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
        ).save_pretrained(path)
    return path


def save_tiny_glpn(path: Path, max_depth: int = 10) -> Path:
    """GLPN (metric, sigmoid * max_depth); its processor floors sizes to a multiple of 32."""
    import torch
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    torch.manual_seed(0)
    config = GLPNConfig(
        num_encoder_blocks=4,
        depths=[1, 1, 1, 1],
        sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 8, 16, 16],
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=8,
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        mlp_ratios=[2, 2, 2, 2],
        max_depth=max_depth,
    )
    GLPNForDepthEstimation(config).save_pretrained(path)
    GLPNImageProcessor().save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=False)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the thread
    pool's spinning doubles wall time; restore the setting afterwards."""
    from ._threads import torch_threads

    with torch_threads(1):
        yield
