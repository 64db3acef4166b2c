"""FaceDetector: RetinaFace weights handling and detections in source-frame coordinates."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from faces_support import footage_paths, mobile_detector, mobile_settings, read_clip

from pipeline.faces import DetectorWeightsError, FaceDetector, FaceSettings


@pytest.fixture(scope="module")
def frame(shared_dir):
    return read_clip(footage_paths(shared_dir)[0], max_frames=1)[0]


def test_missing_weights_error_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere" / "retinaface.pth"
    with pytest.raises(DetectorWeightsError, match="detector_weights") as error:
        FaceDetector(name="retinaface_mobile0.25", weights=missing)
    assert str(missing) in str(error.value)


def test_unreadable_weights_error_names_the_path(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorWeightsError, match="could not be read") as error:
        FaceDetector(name="retinaface_mobile0.25", weights=corrupt)
    assert str(corrupt) in str(error.value)


def test_weights_of_the_other_variant_are_refused_with_the_setting_to_change(shared_dir):
    weights = mobile_settings(shared_dir).detector_weights
    with pytest.raises(DetectorWeightsError, match="faces.detector"):
        FaceDetector(name="retinaface_resnet50", weights=weights)


def test_dataparallel_prefixed_weights_load(shared_dir, tmp_path, frame):
    weights = mobile_settings(shared_dir).detector_weights
    state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"module.{key}": value for key, value in state_dict.items()}, prefixed)
    detector = FaceDetector(name="retinaface_mobile0.25", weights=prefixed)
    assert len(detector.detect(frame[None])[0]) == 1


def test_settings_refuse_unknown_values_naming_the_setting():
    with pytest.raises(ValueError, match="faces.detector"):
        FaceSettings(detector="yolo")
    with pytest.raises(ValueError, match="faces.detect_every"):
        FaceSettings(detect_every=0)


def test_one_face_with_landmarks_inside_its_box(shared_dir, frame):
    faces = mobile_detector(shared_dir).detect(frame[None])[0]
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert face.score > 0.9
    assert face.box.shape == (4,) and face.landmarks.shape == (5, 2)
    assert (face.landmarks[:, 0] > x0).all() and (face.landmarks[:, 0] < x1).all()
    assert (face.landmarks[:, 1] > y0).all() and (face.landmarks[:, 1] < y1).all()
    left_eye, right_eye, nose = face.landmarks[:3]
    assert left_eye[0] < nose[0] < right_eye[0]


def test_large_frames_are_detected_shrunk_and_mapped_back_to_source_pixels(shared_dir, frame):
    detector = mobile_detector(shared_dir)
    assert detector.max_side == 640
    reference = detector.detect(frame[None])[0][0]
    # Shrunk to 640 px, this canvas shows the original frame at (128, 64), a multiple of
    # RetinaFace's coarsest anchor step, so the detector sees the same face on the same grid.
    canvas = np.zeros((1280, 1280, 3), np.uint8)
    canvas[128:1152, 256:1280] = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    face = detector.detect(canvas[None])[0][0]
    tolerance = 0.05 * 2 * reference.eye_distance
    np.testing.assert_allclose(face.landmarks, reference.landmarks * 2 + (256, 128), atol=tolerance)
    np.testing.assert_allclose(face.box, reference.box * 2 + (256, 128, 256, 128), atol=tolerance)


def test_bgr_frames_give_the_same_faces_as_rgb(shared_dir, frame):
    detector = mobile_detector(shared_dir)
    from_rgb = detector.detect(frame[None])[0][0]
    from_bgr = detector.detect(frame[None, ..., ::-1], image_format="BGR")[0][0]
    np.testing.assert_allclose(from_bgr.landmarks, from_rgb.landmarks, atol=1e-3)


def test_a_batch_returns_one_list_per_frame_including_empty_ones(shared_dir, frame):
    gray = np.full_like(frame, 128)
    detections = mobile_detector(shared_dir).detect(np.stack([frame, gray, frame]))
    assert [len(faces) for faces in detections] == [1, 0, 1]


def test_weights_behind_a_url_are_cached_once_per_node_and_verified(shared_dir, frame, moto_s3, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    import hashlib

    import fsspec

    monkeypatch.setenv("DPT_CACHE_DIR", str(tmp_path / "cache"))
    local = mobile_settings(shared_dir).detector_weights
    s3 = fsspec.filesystem("s3")
    s3.put_file(str(local), "archive/weights/retinaface.pth")
    digest = hashlib.sha256(open(local, "rb").read()).hexdigest()
    s3.pipe_file("archive/weights/retinaface.pth.sha256", f"{digest}  retinaface.pth\n".encode())

    detector = FaceDetector(name="retinaface_mobile0.25", weights="s3://archive/weights/retinaface.pth")
    assert len(detector.detect([frame])[0]) == 1
    cached = [path for path in (tmp_path / "cache").rglob("*.pth")]
    assert len(cached) == 1 and hashlib.sha256(cached[0].read_bytes()).hexdigest() == digest
    FaceDetector(name="retinaface_mobile0.25", weights="s3://archive/weights/retinaface.pth")
    assert [path for path in (tmp_path / "cache").rglob("*.pth")] == cached  # no second copy

    s3.pipe_file("archive/weights/other.pth", b"tampered")
    s3.pipe_file("archive/weights/other.pth.sha256", f"{digest}\n".encode())
    with pytest.raises(DetectorWeightsError, match="faces.detector_weights"):
        FaceDetector(name="retinaface_mobile0.25", weights="s3://archive/weights/other.pth")


# -- our batched path against facexlib's own detector -----------------------------------------------


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def _facexlib_faces(detector: FaceDetector, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """facexlib's batched_detect_faces on the frames our detector sees (shrunk the same way), mapped
    back to source pixels: (boxes K x 5, landmarks K x 5 x 2) per frame."""
    from pipeline.faces.detect import detection_scale, resize_for_detection

    scale = detection_scale(*frames.shape[1:3], detector.max_side)
    bgr = np.stack([resize_for_detection(frame, scale) for frame in frames])[..., ::-1]
    with torch.inference_mode():
        boxes, landmarks = detector.model.batched_detect_faces(
            torch.from_numpy(bgr.astype(np.float32)), conf_threshold=detector.score_threshold,
            nms_threshold=detector.nms_threshold,
        )  # fmt: skip
    return [
        (b.reshape(-1, 5) / np.array([scale] * 4 + [1.0]), l.reshape(-1, 5, 2) / scale)
        for b, l in zip(boxes, landmarks, strict=True)
    ]


@pytest.fixture(scope="module")
def crowded_frames(shared_dir) -> np.ndarray:
    """Frames with two, three and one faces: footage clips side by side (1024 and 1536 x 512),
    shrunk to 640 for detection, and a 512 x 512 one at its own size."""
    clips = [read_clip(path, max_frames=6) for path in footage_paths(shared_dir)[:3]]
    pairs = np.concatenate(clips[:2], axis=2)
    trios = np.concatenate(clips, axis=2)
    return [pairs, trios, clips[0]]


def test_batched_detection_finds_what_facexlib_finds(shared_dir, crowded_frames):
    """Boxes at IoU >= 0.95 and landmarks within 1 px of facexlib's detector, in fp32 on the CPU, with
    the same faces in the same order (the ISSUE 12 agreement bound)."""
    weights = mobile_settings(shared_dir).detector_weights
    detector = FaceDetector(name="retinaface_mobile0.25", weights=weights, max_side=640, score_threshold=0.5)
    compared = 0
    for frames in crowded_frames:
        ours = detector.detect(frames)
        theirs = _facexlib_faces(detector, frames)
        for found, (boxes, landmarks) in zip(ours, theirs, strict=True):
            order = np.argsort(-boxes[:, 4], kind="stable")
            assert len(found) == len(order) >= 1
            for face, i in zip(found, order, strict=True):
                assert _box_iou(face.box, boxes[i, :4]) >= 0.95
                assert np.abs(face.landmarks - landmarks[i]).max() <= 1.0
                assert abs(face.score - boxes[i, 4]) < 1e-3
                compared += 1
    assert compared >= 6 * (2 + 3 + 1)


def test_shrinking_on_the_device_keeps_the_detections(shared_dir, crowded_frames):
    """The GPU path shrinks frames with torch (area) instead of OpenCV (INTER_AREA); run that path on
    the CPU and hold it to the same bound against the OpenCV one."""
    from pipeline.faces.detect import detection_scale, run_retinaface, to_detector_input

    weights = mobile_settings(shared_dir).detector_weights
    detector = FaceDetector(name="retinaface_mobile0.25", weights=weights, max_side=640)
    frames = crowded_frames[1]
    scale = detection_scale(*frames.shape[1:3], 640)
    assert scale < 1
    found = []
    with torch.inference_mode():
        for device in ("cpu", "meta-cuda"):
            if device == "cpu":
                batch = to_detector_input(frames, scale, torch.device("cpu"))
            else:  # the device branch, on CPU tensors
                batch = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
                size = (round(batch.shape[2] * scale), round(batch.shape[3] * scale))
                batch = torch.nn.functional.interpolate(batch, size=size, mode="area").flip(1)
                batch = batch - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
            found.append(run_retinaface(detector.model, batch, 0.8, 0.4))
    (boxes_cv, points_cv, frame_cv), (boxes_torch, points_torch, frame_torch) = found
    assert len(boxes_cv) == len(boxes_torch) == 3 * len(frames)
    for i in range(len(boxes_cv)):
        same_frame = torch.nonzero(frame_torch == frame_cv[i])[:, 0]
        j = same_frame[torch.argmin(torch.cdist(boxes_cv[i : i + 1, :2], boxes_torch[same_frame, :2]))]
        assert _box_iou(boxes_cv[i, :4].numpy(), boxes_torch[j, :4].numpy()) >= 0.95
        assert (points_cv[i] - points_torch[j]).abs().max() / scale <= 1.0


def test_prior_boxes_are_facexlibs():
    from facexlib.detection.retinaface import generate_config
    from facexlib.detection.retinaface_utils import PriorBox

    from pipeline.faces.detect import prior_boxes

    cfg = generate_config("mobile0.25")
    for height, width in ((360, 640), (321, 479)):
        theirs = PriorBox(cfg, image_size=(height, width)).forward()
        ours = prior_boxes(tuple(map(tuple, cfg["min_sizes"])), tuple(cfg["steps"]), height, width, "cpu")
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_detecting_on_the_decoders_preview_finds_what_shrinking_the_frames_finds(shared_dir):
    """The faces stage decodes once and detects on the decoder's shrunk copy (swscale's area filter on
    the decoded planes) instead of shrinking RGB frames with OpenCV. The two shrinks differ at the level
    of noise (0.7 of 255 on average), so the detector sees two valid inputs: the same faces, boxes at IoU
    >= 0.9 (>= 0.95 on 95% of them), landmarks within 1 px at the median, and landmarks as steady from
    frame to frame as on OpenCV's (on frames the detector is unsure of, a grey level of noise moves a
    landmark by several pixels either way; tracking smooths that)."""
    from pipeline.media import read_frames, read_frames_with_preview

    weights = mobile_settings(shared_dir).detector_weights
    detector = FaceDetector(name="retinaface_mobile0.25", weights=weights, max_side=320)
    shifts, overlaps, motion = [], [], {"preview": [], "opencv": []}
    for path in footage_paths(shared_dir)[:4]:
        full, small, scale = read_frames_with_preview(path, 0, 24, 320)
        np.testing.assert_array_equal(full, read_frames(path, 0, 24))
        assert small.shape[1:3] == (320, 320) and scale == pytest.approx(320 / 512)
        ours, theirs = detector.detect_shrunk(small, scale), detector.detect(full)
        for mine, reference in zip(ours, theirs, strict=True):
            assert len(mine) == len(reference)
            for a, b in zip(mine, reference, strict=True):
                overlaps.append(_box_iou(a.box, b.box))
                shifts.append(float(np.abs(a.landmarks - b.landmarks).max()))
        for name, found in (("preview", ours), ("opencv", theirs)):
            landmarks = np.array([faces[0].landmarks for faces in found])
            motion[name].append(np.abs(np.diff(landmarks, axis=0)).mean())
    assert len(shifts) >= 90
    assert min(overlaps) >= 0.9 and np.percentile(overlaps, 5) >= 0.95
    assert np.median(shifts) <= 1.0
    assert np.mean(motion["preview"]) <= 1.05 * np.mean(motion["opencv"])
