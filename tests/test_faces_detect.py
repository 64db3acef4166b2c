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
