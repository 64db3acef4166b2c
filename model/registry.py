"""Named configurations of DP-TempCoh and the builder that constructs them."""

from __future__ import annotations

from model.dptempcoh import DPTempCoh, DPTempCohConfig

CONFIGS: dict[str, DPTempCohConfig] = {
    # The official checkpoint (net_g_v1.pth): 374,242,900 parameters.
    "official": DPTempCohConfig(),
    # Same code path with every component present, small enough for CPU pipeline tests.
    "tiny": DPTempCohConfig(
        nf=4,
        ch_mult=(1, 1, 1, 2, 2, 4),
        res_blocks=1,
        emb_dim=16,
        codebook_size=64,
        motion_codebook_size=256,
        dim_embd=32,
        n_heads=2,
        n_layers=2,
        temporal_heads=2,
        temporal_head_dim=16,
        norm_groups=4,
    ),
}


def build_model(name: str = "official") -> DPTempCoh:
    """Construct the named configuration with untrained weights (load or fill them afterwards)."""
    try:
        config = CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(CONFIGS))}") from None
    return DPTempCoh(config).eval()
