"""Pictures for people: sample grids (training, preview). Pure numpy/OpenCV; no metrics, no orchestration."""
from __future__ import annotations

import numpy as np


def sample_grid(images: np.ndarray, classes: list[str]) -> np.ndarray:
    """uint8 grid, one row per class, class names written in a left margin. `images`: (rows*cols, S, S, 1)."""
    import cv2

    rows, size = len(classes), images.shape[1]
    cols = len(images) // rows
    scale = max(0.35, size / 160)
    thickness = 1 if size < 128 else 2
    text_w = max(cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for name in classes)
    margin = text_w + 12
    grid = np.zeros((rows * size, margin + cols * size), np.uint8)
    pixels = np.clip((images[..., 0] + 1.0) * 127.5, 0, 255).astype(np.uint8)
    for r, name in enumerate(classes):
        for c in range(cols):
            grid[r * size:(r + 1) * size, margin + c * size: margin + (c + 1) * size] = pixels[r * cols + c]
        text_h = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1]
        cv2.putText(grid, name, (6, r * size + (size + text_h) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                    thickness, cv2.LINE_AA)
    return grid
