"""Face detection: facexlib's RetinaFace network on batches of frames at a capped resolution.

The network is facexlib's; what surrounds it is ours, so that the whole batch stays on the device it
runs on: frames go up as uint8 (a quarter of the bytes of float), are shrunk there when the device is a
GPU, prior boxes are made once per frame size, and box decoding, the score threshold and NMS
(torchvision.ops.batched_nms, one call for the batch) run on the device too. Only the kept faces come
back. facexlib's own `batched_detect_faces` does the same arithmetic but builds its prior boxes in a
Python loop on every call and runs NMS frame by frame on the CPU; tests hold the two to the same
boxes and landmarks.
"""
from __future__ import annotations

import functools
import math
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

    Frames are RGB uint8 HxWx3, as pipeline.media decodes them; set `image_format="BGR"` on `detect` for
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
        half: bool | None = None,
        random_weights: bool = False,
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
            half: on a GPU, run the network under float16 autocast (decoding and NMS stay float32);
                None: on a GPU, yes. The CPU always runs float32.
            random_weights: the network untrained, `weights` ignored: for benchmarks of its cost (the
                same arithmetic as trained weights; ResNet-50's are not available offline).
        """
        self.name = name
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.half = self.device.type == "cuda" if half is None else half
        self.model = untrained_retinaface(name, self.device) if random_weights else build_retinaface(
            name, weights, self.device
        )
        self.network = inference_network(self.model)

    @classmethod
    def from_settings(cls, settings: FaceSettings, device: str | torch.device = "cpu") -> FaceDetector:
        """The detector the settings describe, on `device`."""
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

    def detect_shrunk(self, frames: np.ndarray | Sequence[np.ndarray], scale: float) -> list[list[Detection]]:
        """Find the faces in BGR frames that were shrunk by `scale` already (the faces stage decodes them
        so, pipeline.media.read_pictures_with_preview); returns them in source-frame pixels."""
        detections: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start : start + self.batch_size])
            detections.extend(self._detect_batch(batch, "BGR", shrunk_by=scale))
        return detections

    def _detect_batch(
        self, frames: np.ndarray, image_format: str, shrunk_by: float | None = None
    ) -> list[list[Detection]]:
        height, width = frames.shape[1:3]
        # frames shrunk already go in as they are; their detections are scaled back all the same
        scale = detection_scale(height, width, self.max_side) if shrunk_by is None else shrunk_by
        with torch.inference_mode():
            shrink = scale if shrunk_by is None else 1.0
            batch = to_detector_input(frames, shrink, self.device, bgr=image_format == "BGR")
            boxes, landmarks, frame_of = run_retinaface(
                self.network, batch, self.score_threshold, self.nms_threshold, half=self.half
            )
        found: list[list[Detection]] = [[] for _ in frames]
        boxes, landmarks, frame_of = boxes.cpu().numpy(), landmarks.cpu().numpy(), frame_of.cpu().numpy()
        for i in range(len(frames)):
            mine = frame_of == i
            found[i] = _to_detections(boxes[mine], landmarks[mine], scale)
        return found


# RetinaFace's input: BGR pixels minus these means (facexlib's mean_tensor), NCHW float.
BGR_MEANS = (104.0, 117.0, 123.0)


def to_detector_input(
    frames: np.ndarray, scale: float, device: torch.device, bgr: bool = False
) -> torch.Tensor:
    """N x H x W x 3 uint8 frames -> RetinaFace's N x 3 x h x w float input on `device`, shrunk by `scale`.

    On the CPU frames are shrunk by OpenCV (INTER_AREA); on a GPU they go up as uint8 and are shrunk
    there (area interpolation, the same averaging)."""
    if device.type == "cpu":
        # shrunk and turned to BGR as uint8 (a quarter of float's bytes), then one pass to float minus the
        # means; NHWC memory seen as NCHW is the channels-last layout the network runs in on the CPU
        shrunk = [resize_for_detection(frame, scale) for frame in frames]
        stacked = np.empty((len(shrunk), *shrunk[0].shape), np.uint8)
        for frame, out in zip(shrunk, stacked, strict=True):
            if bgr:
                out[...] = frame
            else:
                cv2.cvtColor(frame, cv2.COLOR_RGB2BGR, dst=out)
        means = torch.tensor(BGR_MEANS, dtype=torch.float32).view(1, 3, 1, 1)
        return torch.sub(torch.from_numpy(stacked).permute(0, 3, 1, 2), means)
    else:
        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float()
        if scale != 1.0:
            height, width = batch.shape[2:]
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            batch = torch.nn.functional.interpolate(batch, size=size, mode="area")
    if not bgr:
        batch = batch.flip(1)
    means = torch.tensor(BGR_MEANS, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return batch - means


def run_retinaface(
    model: torch.nn.Module,
    batch: torch.Tensor,
    score_threshold: float,
    nms_threshold: float,
    half: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The faces of a batch, all on the batch's device.

    Arguments:
        model: facexlib's RetinaFace (its `cfg` names the prior boxes and variances).
        batch: N x 3 x h x w BGR minus BGR_MEANS (to_detector_input).
    Returns:
        boxes (K, 5) x0, y0, x1, y1, score and landmarks (K, 10) in batch pixels, and the frame index of
        each (K,), sorted by descending score.
    """
    import torchvision

    height, width = batch.shape[2:]
    with torch.autocast("cuda", dtype=torch.float16, enabled=half and batch.device.type == "cuda"):
        loc, conf, landmarks = model(batch)
    loc, conf, landmarks = loc.float(), conf.float(), landmarks.float()
    cfg = model.cfg
    priors = prior_boxes(tuple(map(tuple, cfg["min_sizes"])), tuple(cfg["steps"]), height, width,
                         str(batch.device))  # fmt: skip
    center, size = priors[None, :, :2], priors[None, :, 2:]
    variance_center, variance_size = cfg["variance"]
    centers = center + loc[..., :2] * variance_center * size
    sizes = size * torch.exp(loc[..., 2:] * variance_size)
    corners = torch.cat((centers - sizes / 2, centers + sizes / 2), dim=-1)
    points = center.repeat(1, 1, 5) + landmarks * variance_center * size.repeat(1, 1, 5)
    frame_size = torch.tensor([width, height], dtype=torch.float32, device=batch.device)
    scores = conf[..., 1]
    frame_of, prior = torch.nonzero(scores > score_threshold, as_tuple=True)
    boxes = corners[frame_of, prior] * frame_size.repeat(2)
    points = points[frame_of, prior] * frame_size.repeat(5)
    scores = scores[frame_of, prior]
    keep = torchvision.ops.batched_nms(boxes, scores, frame_of, nms_threshold)
    return torch.cat((boxes[keep], scores[keep, None]), dim=1), points[keep], frame_of[keep]


@functools.lru_cache(maxsize=16)
def prior_boxes(
    min_sizes: tuple[tuple[int, ...], ...], steps: tuple[int, ...], height: int, width: int, device: str
) -> torch.Tensor:
    """RetinaFace's anchors for an h x w input, (P, 4) cx, cy, w, h as fractions of the input, in
    facexlib's order (level, row, column, size); made once per size and device."""
    levels = []
    for sizes, step in zip(min_sizes, steps, strict=True):
        rows, columns = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(columns, dtype=torch.float64) + 0.5) * step / width
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        anchors = [
            torch.stack((cx, cy, torch.full_like(cx, size / width), torch.full_like(cy, size / height)), -1)
            for size in sizes
        ]
        levels.append(torch.stack(anchors, dim=2).reshape(-1, 4))
    return torch.cat(levels).float().to(device)


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


def inference_network(model: torch.nn.Module) -> torch.nn.Module:
    """The RetinaFace network as detection runs it: a copy with each batch norm folded into the
    convolution before it (torch.fx; the same arithmetic up to float rounding, 1e-5 of the outputs) and,
    on the CPU, in the channels-last layout. On one thread, batches of 8 frames of 640x360: mobile0.25
    27 -> 16 core-ms a frame, ResNet-50 630 -> 480. Where the network cannot be traced (a facexlib that
    changed it), the model itself runs, with a warning. The copy keeps the model's `cfg`."""
    from torch.fx.experimental.optimization import fuse

    try:
        network = fuse(model)
    except Exception as error:  # noqa: BLE001 - folding is an optimisation; the model still runs
        warnings.warn(f"RetinaFace runs unfused: torch.fx could not fold its batch norms ({error})",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return model
    device = next(model.parameters()).device
    if device.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    network.cfg = model.cfg
    return network.eval()


def untrained_retinaface(name: str, device: torch.device) -> torch.nn.Module:
    """facexlib's RetinaFace `name` with its initial (random) weights, in eval mode on `device`."""
    from facexlib.detection.retinaface import RetinaFace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = RetinaFace(network_name=name.removeprefix("retinaface_"), half=False, device=device)
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
