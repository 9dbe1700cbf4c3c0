"""A two-component PCA in numpy (the task embedding map's projection). Torch-free."""

from __future__ import annotations

import numpy as np


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``[N, D]`` projected on its first two principal components ``[N, 2]``
    (zero columns when ``D`` < 2), and the share of the variance each explains.
    Each component's sign is fixed so that its largest loading is positive, so the
    same data always gives the same picture."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    components = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(axis=1)])[:, None]
    points = np.zeros((x.shape[0], 2))
    points[:, :k] = centred @ components.T
    variance = singular**2
    total = float(variance.sum())
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = variance[:k] / total
    return points, explained
