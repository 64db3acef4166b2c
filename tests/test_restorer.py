"""The in-process Restorer in aligned mode (detect mode: the README example, test_readme)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import load_settings
from pipeline.media import ffmpeg_exe, probe, read_frames
from pipeline.restorer import Restorer

FACE_CLIP = "Felicity_Huffman.labeled_faces-4.mp4"  # 56 frames of an aligned 512x512 face


def smoke(shared_dir, *overrides: str):
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    return load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}", *overrides])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def aligned_restorer(shared_dir):
    # one clip for the whole shot, near-lossless 4:4:4 output: what is compared is the restoration
    return Restorer(smoke(shared_dir, "faces.mode=aligned", "scenes.max_clip_frames=300", "encode.crf=0",
                          "encode.pix_fmt=yuv444p"))  # fmt: skip


def test_aligned_mode_gives_the_engines_restoration_of_the_frames(aligned_restorer, shared_dir, tmp_path):
    source = shared_dir / "footage" / FACE_CLIP
    report = aligned_restorer.restore_video(source, tmp_path / "restored.mp4")
    decoded = read_frames(source, 0, probe(source).frame_count)
    out = probe(report.output)
    assert (out.frame_count, out.frame_rate) == (len(decoded), probe(source).frame_rate) == (56, 20)
    assert [(clip.start, clip.end) for clip in report.clips] == [(0, 56)]
    assert (report.tracks, report.face_frames) == (1, 56)

    expected = aligned_restorer.engine.restore(decoded[..., ::-1].copy())[..., ::-1]  # the engine is BGR
    restored = read_frames(report.output, 0, out.frame_count)
    assert psnr(restored, expected) > 40  # equal up to encoding (RGB <-> YUV rounding)
    assert psnr(restored, decoded) < 20  # and not the source: synthetic weights restore to noise


def test_aligned_mode_resizes_other_square_sizes_to_512_and_back(aligned_restorer):
    frames = np.random.default_rng(1).integers(0, 255, (9, 256, 256, 3), dtype=np.uint8)
    restored = aligned_restorer.restore_frames(frames)
    assert restored.shape == frames.shape
    upscaled = np.stack([cv2.resize(frame, (512, 512), interpolation=cv2.INTER_CUBIC) for frame in frames])
    direct = aligned_restorer.engine.restore(upscaled[..., ::-1].copy())[..., ::-1]
    shrunk = np.stack([cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA) for face in direct])
    np.testing.assert_array_equal(restored, shrunk)


def test_aligned_mode_refuses_frames_that_are_not_square(aligned_restorer, tmp_path):
    wide = tmp_path / "wide.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
                    "-frames:v", "5", str(wide)], check=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"320x240: faces.mode=aligned expects square frames"):
        aligned_restorer.scan(wide)
