"""Optional face-parsing masks for paste-back: facexlib's ParseNet (19 CelebAMask-HQ classes).

With a mask, only the face itself (skin, brows, eyes, ears, nose, mouth, lips; not hair, neck, hat or
clothes) is pasted, so hair and background around a face keep the source's pixels. Off unless
`faces.parsing_weights` names a ParseNet state dict (facexlib's `parsing_parsenet.pth`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.faces.detect import DetectorWeightsError, local_weights

# CelebAMask-HQ labels kept as face: 1-13 (skin, brows, eyes, glasses, ears, earring, nose, mouth, lips)
# and 15 (earring); background 0, neck 14, neck-lace 16, cloth 17, hair 17-18 and hat are left out.
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)
PARSING_SIZE = 512


class FaceParser:
    """ParseNet on aligned 512x512 crops -> soft face masks in crop space."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        from facexlib.parsing import ParseNet

        from model.weights import WeightsError, load_state_dict_file

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = ParseNet(in_size=PARSING_SIZE, out_size=PARSING_SIZE, parsing_ch=19)
        try:
            self.model.load_state_dict(
                load_state_dict_file(local_weights(weights, "faces.parsing_weights")), strict=True
            )
        except (WeightsError, RuntimeError) as error:
            raise DetectorWeightsError(
                f"faces.parsing_weights: {weights} is not a facexlib ParseNet state dict "
                f"(parsing_parsenet.pth): {str(error).splitlines()[0]}"
            ) from None
        self.model.to(self.device).eval()

    def masks(self, crops: np.ndarray) -> np.ndarray:
        """crops: N x 512 x 512 x 3 uint8 RGB -> N x 512 x 512 float32 face masks in [0, 1]."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch_size]))
            batch = (batch.to(self.device).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
            with torch.inference_mode():
                labels = self.model(batch)[0].argmax(dim=1).cpu().numpy()
            out.extend(soft_face_mask(label) for label in labels)
        return np.stack(out) if out else np.zeros((0, PARSING_SIZE, PARSING_SIZE), np.float32)


def soft_face_mask(labels: np.ndarray, border: int = 10) -> np.ndarray:
    """Per-pixel class labels (H x W) -> a blurred face mask, 0 on a `border`-pixel frame."""
    mask = np.isin(labels, FACE_CLASSES).astype(np.float32)
    side = labels.shape[0]
    kernel = (side // 5) | 1  # a soft edge of about a tenth of the face
    mask = cv2.GaussianBlur(mask, (kernel, kernel), side / 46)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
    return np.clip(mask, 0.0, 1.0)
