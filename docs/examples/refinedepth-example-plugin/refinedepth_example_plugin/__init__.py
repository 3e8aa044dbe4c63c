"""A complete third-party refinedepth backbone: a tiny metric-depth CNN.

refinedepth finds it through the ``refinedepth.backbones`` entry point declared in this package's
``pyproject.toml``; nothing here is imported until the backbone is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from refinedepth import BackboneInfo

MAX_DEPTH = 10.0  # metres: the output is squashed into (0, MAX_DEPTH)


class TinyDepthNet(nn.Module):
    """Three strided convolutions down, bilinear upsampling back to half the input size."""

    def __init__(self, width: int = 16, input_size: tuple[int, int] = (96, 128)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(2 * width, 1, 3, padding=1)
        height, width_px = input_size
        # The contract: every backbone carries a BackboneInfo as `.info`.
        self.info = BackboneInfo(
            name="example-tiny",
            output_kind="metric",
            input_size=(height, width_px),
            output_size=(height // 2, width_px // 2),
            value_range=(0.0, MAX_DEPTH),
            config={"width": width, "input_size": [height, width_px]},
            description="tiny example CNN from refinedepth-example-plugin",
        )

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        # rgb: [B,3,H,W] in [0,1] at info.input_size -> metric depth [B,1,H/2,W/2]
        x = self.head(self.encoder(rgb))
        x = F.interpolate(x, size=self.info.output_size, mode="bilinear", align_corners=False)
        return MAX_DEPTH * torch.sigmoid(x)


def create_tiny(weights=None, width: int = 16, input_size=(96, 128)) -> TinyDepthNet:
    """Tiny example CNN (metric depth, 0-10 m). Options: width, input_size."""
    model = TinyDepthNet(width=int(width), input_size=tuple(input_size))
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights))
    return model.eval()
