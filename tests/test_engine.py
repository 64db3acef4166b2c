"""The inference engine: upstream's window schedule, encoder reuse, batching, and input checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.engine import RestorationEngine, window_schedule
from model.registry import build_model
from model.weights import fill_synthetic_


@pytest.fixture(scope="module")
def engine() -> RestorationEngine:
    tiny = build_model("tiny")
    fill_synthetic_(tiny, seed=0)
    return RestorationEngine(tiny, device="cpu", batch_windows=4)


def random_clip(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 512, 512, 3), dtype=np.uint8)


@pytest.mark.parametrize("frames", range(1, 42))
def test_schedule_keeps_every_frame_exactly_once(frames):
    windows = window_schedule(frames)
    kept = [window.frames[offset] for window in windows for offset in window.keep]
    assert kept == list(range(frames))
    assert all(len(window.frames) == 8 for window in windows)
    assert windows[0].keep == tuple(range(min(8, frames)))
    assert all(window.keep == tuple(range(4, 4 + len(window.keep))) for window in windows[1:])


def test_schedule_matches_upstream_window_starts_and_padding():
    # 13 frames: padded to 16 by repeating frame 12; windows start at 0, 4, 8.
    windows = window_schedule(13, skip_padding=False)
    assert [w.frames[0] for w in windows] == [0, 4, 8]
    assert windows[2].frames == (8, 9, 10, 11, 12, 12, 12, 12)
    # 9 frames: the window at 8 would keep only padding (positions 12..15) and is skipped by default.
    assert [w.frames[0] for w in window_schedule(9)] == [0, 4]
    assert [w.frames[0] for w in window_schedule(9, skip_padding=False)] == [0, 4, 8]
    assert window_schedule(3)[0].frames == (0, 1, 2, 2, 2, 2, 2, 2)


def assert_same_restoration(a: np.ndarray, b: np.ndarray) -> None:
    # Batched and unbatched float math may round a value across an integer boundary: 1 LSB at most.
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 1
    assert np.mean(a == b) > 0.98


@pytest.mark.parametrize("frames", [3, 13, 16])
def test_engine_reproduces_upstream_schedule(engine, frames):
    clip = random_clip(frames, seed=frames)
    restored = engine.restore(clip)
    assert_same_restoration(restored, engine.restore_naive(clip))
    assert not np.array_equal(restored, clip)


def test_batching_across_clips_gives_each_clip_its_own_result(engine):
    clips = [random_clip(13, seed=1), random_clip(6, seed=2), random_clip(17, seed=3)]
    together = engine.restore_many(clips)
    for clip, result in zip(clips, together, strict=True):
        assert_same_restoration(result, engine.restore(clip))


def test_encoder_runs_once_per_frame(engine, monkeypatch):
    encoded = []
    original = engine.model.encode
    monkeypatch.setattr(engine.model, "encode", lambda x: encoded.append(len(x)) or original(x))
    engine.restore(random_clip(16))
    assert sum(encoded) == 16  # upstream's schedule encodes 24 frames for the same clip


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 512, 512, 3), np.uint8), "T >= 1"),
        (np.zeros((4, 256, 256, 3), np.uint8), "512 x 512"),
        (np.zeros((4, 512, 512, 3), np.float32), "uint8"),
    ],
)
def test_bad_input_is_refused_clearly(engine, bad, message):
    with pytest.raises(ValueError, match=message):
        engine.restore(bad)


def test_non_finite_output_is_an_error_not_a_frame(engine):
    broken = build_model("tiny")
    fill_synthetic_(broken, seed=0)
    with torch.no_grad():
        broken.generator.blocks[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN"):
        RestorationEngine(broken, device="cpu").restore(random_clip(8))


def test_half_precision_needs_a_gpu():
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        RestorationEngine(build_model("tiny"), device="cpu", precision="fp16")


def test_auto_precision_is_fp32_on_cpu(engine):
    assert engine.precision == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_gpu_stays_close_to_fp32():
    tiny = build_model("tiny")
    fill_synthetic_(tiny, seed=0)
    clip = random_clip(16)
    fp32 = RestorationEngine(tiny, device="cuda", precision="fp32").restore(clip)
    bf16 = RestorationEngine(tiny, device="cuda", precision="bf16").restore(clip)
    mse = np.mean((fp32.astype(np.float64) - bf16) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) >= 30
