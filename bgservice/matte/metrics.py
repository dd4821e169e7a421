"""Matte quality metrics (as in the Robust Video Matting evaluation, plus IoU and a boundary F-score).

Every function takes float32 alphas in 0..1 of the same shape [H,W] and returns a plain float.
MAD and MSE are reported x1e3, dtSSD x1e2, like the RVM paper.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def mad(pred: F32, true: F32) -> float:
    """Mean absolute difference, x1e3."""
    return float(np.abs(pred - true).mean()) * 1e3


def mse(pred: F32, true: F32) -> float:
    """Mean squared error, x1e3."""
    return float(np.square(pred - true).mean()) * 1e3


def iou(pred: F32, true: F32, threshold: float = 0.5) -> float:
    """Intersection over union of the masks alpha > threshold (1.0 when both are empty)."""
    p = pred > threshold
    t = true > threshold
    union = int(np.count_nonzero(p | t))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & t)) / union


def _boundary(mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out: npt.NDArray[np.bool_] = (mask > 0) & (eroded == 0)
    return out


def boundary_f(pred: F32, true: F32, threshold: float = 0.5, tolerance: float = 0.008) -> float:
    """DAVIS-style boundary F-measure of the masks alpha > threshold.

    A boundary pixel counts as matched when the other mask's boundary is within ``tolerance`` x the image
    diagonal (DAVIS uses 0.008: 8 px at 854x480, 18 px at 1080p).
    """
    p = _boundary((pred > threshold).astype(np.uint8))
    t = _boundary((true > threshold).astype(np.uint8))
    np_, nt = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    if np_ == 0 and nt == 0:
        return 1.0
    if np_ == 0 or nt == 0:
        return 0.0
    h, w = pred.shape
    r = max(1, round(tolerance * float(np.hypot(h, w))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    t_d = cv2.dilate(t.astype(np.uint8), disk) > 0
    p_d = cv2.dilate(p.astype(np.uint8), disk) > 0
    precision = int(np.count_nonzero(p & t_d)) / np_
    recall = int(np.count_nonzero(t & p_d)) / nt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def dtssd(pred_t: F32, pred_tm1: F32, true_t: F32, true_tm1: F32) -> float:
    """Temporal stability: sqrt(mean(((p_t - p_t-1) - (g_t - g_t-1))^2)), x1e2 (RVM's dtSSD)."""
    d = (pred_t - pred_tm1) - (true_t - true_tm1)
    return float(np.sqrt(np.square(d).mean())) * 1e2
