"""Depth regression losses.

berHu, the reverse Huber (Zwald & Lambert-Lacroix 2012), as Laina et al. use it to train FCRN and
Sun et al. for their first stage (paper Eq. 1, SPEC §3.3)::

    B(x) = |x|                  if |x| <= c
           (x^2 + c^2) / (2c)   otherwise,     c = 0.2 * max_i |pred_i - gt_i|

with the maximum taken over the valid pixels of the whole batch and treated as a constant
(detached). Invalid ground truth (``gt <= 0`` or non-finite, or outside a given ``valid`` mask) is
excluded from both the threshold and the mean. The two pieces meet at ``|x| = c`` (value c, slope 1).
"""

from __future__ import annotations

import torch

from .errors import ShapeError

BERHU_C_RATIO = 0.2  # Laina et al. 2016 §3.3 / Sun et al. Eq. (1): c = max|residual| / 5


def _align(pred: torch.Tensor, gt: torch.Tensor, name: str = "gt") -> torch.Tensor:
    """Return ``gt`` with ``pred``'s shape, accepting ``[B,H,W]`` against ``[B,1,H,W]``."""
    if gt.shape == pred.shape:
        return gt
    if pred.ndim == 4 and pred.shape[1] == 1 and gt.ndim == 3 and gt.shape == pred.shape[:1] + pred.shape[2:]:
        return gt.unsqueeze(1)
    raise ShapeError(
        f"berhu_loss: pred is {list(pred.shape)} but {name} is {list(gt.shape)}; "
        "resize the ground truth to the prediction's resolution first"
    )


def valid_mask(gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels usable for supervision: finite, positive, and inside ``valid`` when given."""
    mask = torch.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask = mask & valid.to(torch.bool)
    return mask


def berhu_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    c_ratio: float = BERHU_C_RATIO,
) -> torch.Tensor:
    """Mean berHu loss over the valid pixels of a batch.

    Args:
        pred: predicted depth, any shape (typically ``[B,1,H,W]``).
        gt: ground truth of the same shape (``[B,H,W]`` is accepted for a ``[B,1,H,W]`` pred).
        valid: optional boolean mask of ``gt``'s shape; combined with ``gt > 0`` and finiteness.
        c_ratio: threshold as a fraction of the batch's largest absolute residual (0.2).

    Returns:
        a scalar tensor; zero (still attached to ``pred``'s graph) when no pixel is valid.
    """
    gt = _align(pred, gt)
    if valid is not None:
        valid = _align(pred, valid, name="valid")
    mask = valid_mask(gt, valid)
    # Index rather than multiply by the mask: NaN ground truth must not reach the gradient.
    residual = pred[mask] - gt[mask].to(pred.dtype)
    if residual.numel() == 0:
        return pred.sum() * 0.0
    abs_res = residual.abs()
    c = (c_ratio * abs_res.max()).detach()
    if c <= 0:  # perfect prediction: every residual is zero, so is the loss
        return abs_res.mean()
    quadratic = (residual * residual + c * c) / (2 * c)
    return torch.where(abs_res <= c, abs_res, quadratic).mean()


__all__ = ["berhu_loss", "valid_mask", "BERHU_C_RATIO"]
