"""The network: checkpoint layout, named configurations, building blocks, and upstream parity."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from model.dptempcoh import DPTempCoh
from model.layers import AttnBlock
from model.parity import run_parity
from model.registry import build_model
from model.temporal import SpatioTemporalTransformer, TemporalResBlock
from model.transformer import PackedMultiheadAttention
from model.weights import fill_synthetic_

OFFICIAL_PARAMETERS = 374_242_900


def official_on_meta() -> DPTempCoh:
    with torch.device("meta"):
        return build_model("official")


def test_official_state_dict_matches_the_checkpoint_layout(shared_dir):
    expected = json.loads((shared_dir / "parity" / "checkpoint_keys.json").read_text())
    state = official_on_meta().state_dict()
    assert sorted(state) == sorted(expected)
    mismatched = {k: (list(v.shape), expected[k]) for k, v in state.items() if list(v.shape) != expected[k]}
    assert mismatched == {}


def test_official_parameter_count():
    assert sum(p.numel() for p in official_on_meta().parameters()) == OFFICIAL_PARAMETERS


def test_unknown_configuration_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="official, tiny"):
        build_model("huge")


def test_tiny_exercises_every_component():
    tiny = build_model("tiny")
    kinds = {type(m) for m in tiny.modules()}
    assert {AttnBlock, TemporalResBlock, SpatioTemporalTransformer} <= kinds
    assert len(tiny.ft_layers) >= 1 and len(tiny.bank_crossAtten) >= 1
    assert tiny.config.img_size == 512 and tiny.config.frames == 8
    assert sum(p.numel() for p in tiny.parameters()) < OFFICIAL_PARAMETERS / 100


def test_tiny_window_shapes_and_token_ranges():
    tiny = build_model("tiny")
    fill_synthetic_(tiny, seed=1)
    frames = torch.rand(2, 8, 3, 512, 512) * 2 - 1
    with torch.inference_mode():
        out = tiny(frames)
    side = tiny.config.latent_size
    assert out.frames.shape == frames.shape
    assert torch.isfinite(out.frames).all()
    assert out.tokens.shape == (2, 8 * side * side)
    assert out.motion_tokens.shape == (2, side * side)
    assert 0 <= int(out.tokens.min()) and int(out.tokens.max()) < tiny.config.codebook_size
    assert int(out.motion_tokens.max()) < tiny.config.motion_codebook_size


def test_windows_of_a_batch_are_independent():
    tiny = build_model("tiny")
    fill_synthetic_(tiny, seed=2)
    frames = torch.rand(3, 8, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        together = tiny(frames)
        alone = tiny(frames[1:2])
    # the same codes are chosen; pixels differ only by float rounding of batched kernels
    assert torch.equal(together.tokens[1:2], alone.tokens)
    assert torch.equal(together.motion_tokens[1:2], alone.motion_tokens)
    torch.testing.assert_close(together.frames[1:2], alone.frames, atol=2e-3, rtol=1e-3)


def test_packed_attention_computes_torch_multihead_attention():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(64, 8).eval()
    ours = PackedMultiheadAttention(64, 8)
    ours.load_state_dict(reference.state_dict())
    q, k, v = (torch.randn(2, 50, 64) for _ in range(3))
    expected = reference(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), need_weights=False)[0]
    torch.testing.assert_close(ours(q, k, v), expected.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_motion_codebook_init_has_positive_variances():
    tiny = build_model("tiny")
    assert (tiny.motion_quantize.embedding.weight[:, 1::2] >= 0).all()


@pytest.mark.slow
def test_parity_with_upstream_on_seed0(shared_dir):
    report = run_parity(shared_dir / "parity" / "seed0", device="cpu")
    print(report.to_json())
    assert report.token_agreement >= 0.995
    assert report.motion_token_agreement >= 0.99
    assert report.psnr_db >= 40.0
    assert report.passed
