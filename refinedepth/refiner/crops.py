"""Full-resolution training crops for refiners with a guided head (issue 14).

A training item then has two views of one sample:

* the **model view**, as every refiner trains: the whole rough map and RGB resized (bilinear) to
  the model size, ``gt``/``valid`` resized (nearest) to it;
* the **crop view**, at the ground truth's resolution: a random window (``crop`` pixels, clipped
  to the image) of the rough map resized bilinearly to the gt size, of the RGB resized to it, of
  ``gt`` and ``valid``, and ``crop_box = [top, left, H, W]``.

With ``zoom`` the paper's scale augmentation (:mod:`refinedepth.augment`: zoom in by ``s`` in
[1, 1.5] on a random window, depths divided by ``s``) is applied to the whole sample first, at
each map's own resolution, so the two views are cut from the same zoomed scene and stay
registered; the training step then draws flips and brightness only. The window and the zoom are
drawn from ``(seed, epoch, index)`` (:func:`refinedepth.augment.sample_generator`), so a resumed
run draws the same crops, in any DataLoader worker. The full-resolution maps are made
in the loader; the training step only sees crop- and model-sized tensors, so its memory does not
depend on the image size. :func:`upsample_crop` gives the window of the bilinear upsampling of the
U-Net's output without computing the rest of it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..geometry import resize_depth, resize_mask, resize_rgb, resize_smooth
from .normalize import Normalization, clip_to_limits


class CropDataset:
    """Wraps a :class:`~refinedepth.cache.CacheDataset` opened at the gt resolution (no
    ``target_size``). Keys are sample positions or ``(position, epoch)`` pairs."""

    def __init__(
        self, dataset, model_size: tuple[int, int], crop: tuple[int, int], seed: int = 0, zoom: bool = False,
        max_depth: float | None = None,
    ) -> None:
        self.dataset = dataset
        # the rough map's range, clipped to before resizing (the refiner's max_depth, default the cache's)
        self.norm = Normalization(output_kind=dataset.output_kind, max_depth=max_depth or dataset.max_depth)
        self.model_size = (int(model_size[0]), int(model_size[1]))
        self.crop = (int(crop[0]), int(crop[1]))
        self.seed = int(seed)
        self.zoom = bool(zoom)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # output_kind, max_depth, attrs, config ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key) -> dict[str, Any]:
        from ..augment import sample_generator

        position, epoch = key if isinstance(key, tuple) else (key, 0)
        item = self.dataset[int(position)]
        if self.zoom:
            item = self._zoomed(item, sample_generator(self.seed + 8_888, int(epoch), int(item["index"])))
        gt, valid = item["gt"], item["valid"]
        full = tuple(gt.shape[-2:])
        ch, cw = min(self.crop[0], full[0]), min(self.crop[1], full[1])
        g = sample_generator(self.seed + 7_777, int(epoch), int(item["index"]))
        top = int(torch.randint(0, full[0] - ch + 1, (1,), generator=g))
        left = int(torch.randint(0, full[1] - cw + 1, (1,), generator=g))
        window = (slice(None), slice(top, top + ch), slice(left, left + cw))
        out = dict(item)
        # clipped to the range the normalisation maps onto [-1, 1] before resizing, as inference
        # normalises the stored map before resizing it (train.py's _model_rough)
        limits = self.norm.rough_limits(item["rough"][None])
        out["rough_limits"] = limits[0]
        stored = clip_to_limits(item["rough"][None], limits)
        rough_full = resize_smooth(stored, full)[0]
        out["crop_rough"] = rough_full[window].contiguous()
        out["crop_gt"] = gt[window].contiguous()
        out["crop_valid"] = valid[window].contiguous()
        if "rgb" in item:
            out["crop_rgb"] = resize_rgb(item["rgb"][None], full)[0][window].contiguous()
        out["crop_box"] = torch.tensor([top, left, full[0], full[1]], dtype=torch.int64)
        # the model view at the model size, made here so that nothing image-sized reaches the step
        out["rough"] = resize_smooth(stored, self.model_size)[0]
        if "rgb" in item:
            out["rgb"] = resize_rgb(item["rgb"][None], self.model_size)[0]
        if full != self.model_size:  # the targets, as CacheDataset(target_size=...) resizes them
            out["gt"] = resize_depth(gt, self.model_size)
            out["valid"] = resize_mask(valid, self.model_size)
        return out

    def _zoomed(self, item: dict[str, Any], generator) -> dict[str, Any]:
        """``item`` zoomed in by one draw of the scale augmentation, every map at its own size."""
        from ..augment import apply_params, draw_params

        params = draw_params(1, ("scale",), generator)
        maps = {k: item[k][None] for k in ("rough", "gt", "valid", "rgb") if k in item}
        zoomed = apply_params(maps, params, kind=self.dataset.output_kind)
        return {**item, **{k: v[0] for k, v in zoomed.items()}}


def upsample_crop(x: torch.Tensor, boxes: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """The window ``crop`` at ``boxes[:, :2]`` (top, left) of ``x`` ``[B,C,h,w]`` resized
    bilinearly to ``boxes[:, 2:]`` (H, W) with :func:`refinedepth.geometry.resize_smooth`'s
    convention (half-pixel centres, ``align_corners=False``).

    When upsampling (H >= h and W >= w, the usual case) only the window is computed, with
    ``grid_sample`` at the window's pixel centres; otherwise (antialiased shrinking) the whole
    resize is computed and cropped."""
    b = x.shape[0]
    ch, cw = int(crop[0]), int(crop[1])
    boxes = boxes.to(torch.int64).cpu()
    full_h, full_w = int(boxes[0, 2]), int(boxes[0, 3])
    if full_h < x.shape[-2] or full_w < x.shape[-1]:
        up = resize_smooth(x, (full_h, full_w))
        return torch.stack([up[i, :, t : t + ch, x0 : x0 + cw] for i, (t, x0) in enumerate(boxes[:, :2].tolist())])
    ys = (torch.arange(ch, dtype=torch.float64).view(1, ch) + boxes[:, :1].double() + 0.5) * 2 / full_h - 1
    xs = (torch.arange(cw, dtype=torch.float64).view(1, cw) + boxes[:, 1:2].double() + 0.5) * 2 / full_w - 1
    grid = torch.stack(
        [xs[:, None, :].expand(b, ch, cw), ys[:, :, None].expand(b, ch, cw)], dim=-1
    ).to(dtype=x.dtype, device=x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def flip_boxes(boxes: torch.Tensor, flip: torch.Tensor, crop_width: int) -> torch.Tensor:
    """Boxes in the coordinates of the mirrored image for the samples where ``flip`` is set."""
    out = boxes.clone()
    left_flipped = boxes[:, 3] - boxes[:, 1] - int(crop_width)
    out[:, 1] = torch.where(flip.to(boxes.device), left_flipped, boxes[:, 1])
    return out


__all__ = ["CropDataset", "flip_boxes", "upsample_crop"]
