"""Check the network against a parity fixture: upstream's forward pass with synthetic weights.

A fixture folder holds `meta.json` (the seed of the synthetic weights), `input_bgr.npy` (uint8
8 x 512 x 512 x 3), and upstream's `tokens.npy`, `motion_tokens.npy` and `output_bgr.npy`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model.engine import RestorationEngine, tensor_to_frames
from model.registry import build_model
from model.weights import fill_synthetic_

MIN_TOKEN_AGREEMENT = 0.995
MIN_MOTION_TOKEN_AGREEMENT = 0.99
MIN_PSNR_DB = 40.0
FIXTURE_FILES = ("meta.json", "input_bgr.npy", "tokens.npy", "motion_tokens.npy", "output_bgr.npy")


@dataclass
class ParityReport:
    seed: int
    token_agreement: float
    motion_token_agreement: float
    psnr_db: float
    max_abs_diff: int

    @property
    def passed(self) -> bool:
        return (
            self.token_agreement >= MIN_TOKEN_AGREEMENT
            and self.motion_token_agreement >= MIN_MOTION_TOKEN_AGREEMENT
            and self.psnr_db >= MIN_PSNR_DB
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed})


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 arrays in dB (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def load_fixture(fixture: str | Path) -> dict:
    """Read a fixture folder; a missing file is named in the error."""
    folder = Path(fixture)
    for name in FIXTURE_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"parity fixture {folder} lacks {name} (see shared/parity/README.md)")
    data = {
        name.removesuffix(".npy"): np.load(folder / name) for name in FIXTURE_FILES if name.endswith(".npy")
    }
    data["meta"] = json.loads((folder / "meta.json").read_text())
    return data


def run_parity(fixture: str | Path, device: str = "auto") -> ParityReport:
    """Run the official configuration with the fixture's synthetic weights (fp32) and compare."""
    data = load_fixture(fixture)
    seed = int(data["meta"]["seed"])
    model = build_model("official")
    fill_synthetic_(model, seed)
    # The engine's device and layout, so that the check covers what production runs.
    engine = RestorationEngine(model, device=device, precision="fp32")
    with torch.inference_mode():
        result = model(engine.to_input(data["input_bgr"])[None])
    output = tensor_to_frames(result.frames[0])
    return ParityReport(
        seed=seed,
        token_agreement=float(np.mean(result.tokens[0].cpu().numpy() == data["tokens"])),
        motion_token_agreement=float(np.mean(result.motion_tokens[0].cpu().numpy() == data["motion_tokens"])),
        psnr_db=psnr_db(output, data["output_bgr"]),
        max_abs_diff=int(np.abs(output.astype(np.int16) - data["output_bgr"].astype(np.int16)).max()),
    )
