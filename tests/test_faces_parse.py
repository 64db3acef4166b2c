"""Face-parsing masks for paste-back: ParseNet loaded from a path, masks limit what is pasted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.faces import PastedFace, paste_faces
from pipeline.faces.detect import DetectorWeightsError
from pipeline.faces.parse import FACE_CLASSES, FaceParser, soft_face_mask
from pipeline.faces.paste import paste_mask


@pytest.fixture(scope="module")
def parsenet_weights(tmp_path_factory):
    """A ParseNet state dict saved as facexlib ships it (random values: no weights download here)."""
    from facexlib.parsing import ParseNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parsing") / "parsing_parsenet.pth"
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), path)
    return path


def test_soft_mask_keeps_face_classes_and_clears_the_border():
    labels = np.zeros((512, 512), np.int64)
    labels[128:384, 128:384] = 1  # skin
    labels[:128] = 17  # hair
    mask = soft_face_mask(labels)
    assert mask[256, 256] == pytest.approx(1.0, abs=1e-3)
    assert mask[50, 256] == 0.0 and mask[470, 256] == 0.0
    assert mask[:10].max() == 0.0 and mask[:, -10:].max() == 0.0
    assert 1 in FACE_CLASSES and 17 not in FACE_CLASSES and 0 not in FACE_CLASSES


def test_parser_masks_limit_the_paste(parsenet_weights):
    parser = FaceParser(parsenet_weights)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 512, 512, 3), dtype=np.uint8)
    masks = parser.masks(crops)
    assert masks.shape == (2, 512, 512) and masks.dtype == np.float32
    assert 0.0 <= masks.min() and masks.max() <= 1.0

    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    affine = np.array([[1.0, 0.0, -300.0], [0.0, 1.0, -100.0]])  # the crop sits at (300, 100) in the frame
    limited = PastedFace(crops[0], affine, masks[0])
    pasted = paste_faces(frame, [limited])
    weight = paste_mask(limited, frame.shape[:2])
    changed = np.any(pasted != frame, axis=-1)
    assert not changed[weight == 0].any()  # outside the parsed, feathered face: bit-exact
    assert (weight <= paste_mask(PastedFace(crops[0], affine), frame.shape[:2]) + 1e-6).all()


def test_a_file_that_is_not_parsenet_is_refused_with_the_setting(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(DetectorWeightsError, match="faces.parsing_weights"):
        FaceParser(path)
