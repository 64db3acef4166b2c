"""Face detection: facexlib's RetinaFace on batches of frames at a capped resolution."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.faces.settings import DETECTOR_NAMES, FaceSettings


@dataclass(frozen=True, eq=False)
class Detection:
    """One face in one frame, in source-frame pixels.

    Attributes:
        box: (4,) float32 x0, y0, x1, y1.
        score: RetinaFace face probability.
        landmarks: (5, 2) float32 x, y of the eye, eye, nose tip, mouth corner, mouth corner, in
            RetinaFace's order (the first of each pair is the one on the image's left).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


class DetectorWeightsError(RuntimeError):
    """The detector's weights could not be found, read or loaded."""


class FaceDetector:
    """RetinaFace (facexlib) over batches of same-sized frames.

    Frames are RGB uint8 HxWx3, as decord decodes them; set `image_format="BGR"` on `detect` for
    frames read with cv2. RetinaFace's weights were trained on BGR, so RGB frames are flipped here.
    """

    image_format = "RGB"

    def __init__(
        self,
        name: str = "retinaface_resnet50",
        weights: str | Path | None = None,
        max_side: int = 640,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ) -> None:
        """
        Arguments:
            name: "retinaface_resnet50" (default, accurate) or "retinaface_mobile0.25" (fast).
            weights: a RetinaFace state dict for `name`; None downloads facexlib's release weights.
            max_side: longest side frames are shrunk to before detection; 0 keeps the source size.
            score_threshold: minimum face probability.
            nms_threshold: IoU above which overlapping boxes are merged.
            batch_size: frames per forward pass.
            device: torch device to run on.
        """
        self.name = name
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model = build_retinaface(name, weights, self.device)

    @classmethod
    def from_settings(cls, settings: FaceSettings, device: str | torch.device = "cpu") -> FaceDetector:
        return cls(
            name=settings.detector,
            weights=settings.detector_weights,
            max_side=settings.detect_max_side,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            batch_size=settings.detect_batch_size,
            device=device,
        )

    def detect(
        self, frames: np.ndarray | Sequence[np.ndarray], image_format: str = "RGB"
    ) -> list[list[Detection]]:
        """Find the faces in each frame.

        Arguments:
            frames: NxHxWx3 uint8 (or a sequence of HxWx3 frames of one size).
            image_format: "RGB" or "BGR", the channel order of `frames`.
        Returns:
            for each frame, its faces sorted by descending score, in source-frame pixels.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format={image_format!r}: use 'RGB' or 'BGR'")
        detections: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start : start + self.batch_size])
            detections.extend(self._detect_batch(batch, image_format))
        return detections

    def _detect_batch(self, frames: np.ndarray, image_format: str) -> list[list[Detection]]:
        height, width = frames.shape[1:3]
        scale = detection_scale(height, width, self.max_side)
        resized = np.stack([resize_for_detection(frame, scale) for frame in frames])
        bgr = resized[..., ::-1] if image_format == "RGB" else resized
        batch = torch.from_numpy(bgr.astype(np.float32)).to(self.device)
        with torch.inference_mode():
            boxes_per_frame, landmarks_per_frame = self.model.batched_detect_faces(
                batch, conf_threshold=self.score_threshold, nms_threshold=self.nms_threshold
            )
        return [
            _to_detections(boxes, landmarks, scale)
            for boxes, landmarks in zip(boxes_per_frame, landmarks_per_frame, strict=True)
        ]


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Factor (<= 1) that brings the longest side of a frame down to `max_side` (0: no cap)."""
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return 1.0
    return max_side / longest


def resize_for_detection(frame: np.ndarray, scale: float) -> np.ndarray:
    """HxWx3 -> round(H*scale) x round(W*scale) x 3 (INTER_AREA, which does not alias when shrinking)."""
    if scale == 1.0:
        return frame
    height, width = frame.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _to_detections(boxes: np.ndarray, landmarks: np.ndarray, scale: float) -> list[Detection]:
    """facexlib's (K, 5) boxes+score and (K, 10) landmarks at detection scale -> Detections."""
    if boxes.size == 0:
        return []
    order = np.argsort(-boxes[:, 4], kind="stable")
    return [
        Detection(
            box=(boxes[i, :4] / scale).astype(np.float32),
            score=float(boxes[i, 4]),
            landmarks=(landmarks[i].reshape(5, 2) / scale).astype(np.float32),
        )
        for i in order
    ]


def local_weights(spec: str | Path, setting: str) -> Path:
    """A local file for a weights setting: a path as it is; an fsspec URL (s3://, gs://, https://...)
    copied once into this node's cache ($DPT_CACHE_DIR) and checked against the sha256 in the URL's
    `.sha256` sidecar when there is one (`model.weights.resolve_weights` does the same for the
    network). A cached copy is reused by every later actor on the node."""
    if "://" not in str(spec):
        return Path(spec)
    from model.weights import WeightsError, resolve_weights

    try:
        return resolve_weights(str(spec)).path
    except WeightsError as error:
        message = str(error).split("; fix the URL")[0].replace("model.weights", setting)
        raise DetectorWeightsError(f"{setting}: {message}") from None


def build_retinaface(name: str, weights: str | Path | None, device: torch.device) -> torch.nn.Module:
    """Construct facexlib's RetinaFace `name` in eval mode with `weights` (None: facexlib's download)."""
    if name not in DETECTOR_NAMES:
        raise ValueError(f"detector {name!r} is unknown: choose one of {', '.join(DETECTOR_NAMES)}")
    if weights is None:
        return _download_retinaface(name, device)
    from facexlib.detection.retinaface import RetinaFace

    with warnings.catch_warnings():
        # facexlib builds its ResNet-50 backbone with torchvision's deprecated `pretrained=False`.
        warnings.simplefilter("ignore", UserWarning)
        model = RetinaFace(network_name=name.removeprefix("retinaface_"), half=False, device=device)
    state_dict = read_state_dict(local_weights(weights, "faces.detector_weights"))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise DetectorWeightsError(
            f"detector weights {weights} do not fit {name}: set faces.detector to the RetinaFace variant "
            f"these weights were trained for ({' or '.join(DETECTOR_NAMES)}).\n{error}"
        ) from error
    return model.to(device).eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a RetinaFace checkpoint as a plain state dict, without DataParallel's 'module.' prefix."""
    if not path.is_file():
        raise DetectorWeightsError(
            f"detector weights not found: {path}. Set faces.detector_weights to an existing RetinaFace "
            "state dict, or leave it empty to let facexlib download its weights (needs internet)."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DetectorWeightsError(
            f"detector weights {path} could not be read ({error}). Replace the file with a RetinaFace "
            "state dict (.pth) saved by torch.save."
        ) from error
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise DetectorWeightsError(
            f"detector weights {path} hold a {type(checkpoint).__name__}, not a state dict. "
            "Point faces.detector_weights at a RetinaFace state dict (.pth)."
        )
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def _download_retinaface(name: str, device: torch.device) -> torch.nn.Module:
    from facexlib.detection import init_detection_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return init_detection_model(name, half=False, device=device).eval()
    except OSError as error:
        raise DetectorWeightsError(
            f"facexlib could not download the {name} weights ({error}). Without internet, set "
            "faces.detector_weights to a local RetinaFace state dict for this detector."
        ) from error
