"""Speaker identification by the nearest centroid of unit speaker embeddings (cosine similarity)."""

from __future__ import annotations

import numpy as np


def nearest(embedding: np.ndarray, names: list[str], centroids: np.ndarray) -> str:
    """embedding [E], centroids [S, E] (rows in the order of `names`) -> the name of the most similar."""
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    return names[int(np.argmax(c @ (embedding / np.linalg.norm(embedding))))]
