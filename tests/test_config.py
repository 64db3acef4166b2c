"""Settings: YAML files and --set overrides, validated into one typed schema."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from shared_data import shared_missing

from pipeline.config import (
    ConfigError,
    Settings,
    check_local_files,
    load_settings,
    named_config,
)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_default_yaml_is_the_schema_defaults():
    assert load_settings(named_config("default")) == Settings()
    assert load_settings() == Settings()


def test_default_is_production_and_smoke_is_tiny_and_offline():
    default = load_settings(named_config("default"))
    assert default.model.name == "official" and default.model.weights is None
    assert default.faces.detector == "retinaface_resnet50"

    smoke = load_settings(named_config("smoke"))
    assert smoke.model.name == "tiny"
    assert smoke.model.weights == "synthetic:0"
    assert smoke.faces.detector == "retinaface_mobile0.25"
    assert smoke.faces.detector_weights == "../shared/weights/retinaface_mobile0.25.pth"


def test_file_values_then_overrides_win(tmp_path):
    path = write_config(tmp_path, "faces:\n  max_gap: 3\n  detect_every: 2\nencode:\n  crf: 20\n")
    settings = load_settings(path, ["faces.max_gap=8", "model.weights=synthetic:7", "scenes.threshold=30"])
    assert settings.faces.max_gap == 8
    assert settings.faces.detect_every == 2
    assert settings.encode.crf == 20
    assert settings.model.weights == "synthetic:7"
    assert settings.scenes.threshold == 30.0 and isinstance(settings.scenes.threshold, float)
    assert settings.faces.detector == Settings().faces.detector  # untouched keys keep their default


def test_override_null_clears_a_path():
    settings = load_settings(named_config("smoke"), ["faces.detector_weights=null"])
    assert settings.faces.detector_weights is None


def test_misspelled_key_names_the_file_and_suggests_the_fix(tmp_path):
    path = write_config(tmp_path, "faces:\n  detectr: retinaface_mobile0.25\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert str(path) in message
    assert "faces.detectr: unknown setting; did you mean faces.detector?" in message


def test_misspelled_section(tmp_path):
    with pytest.raises(ConfigError, match=r"facs: unknown section; did you mean faces\?"):
        load_settings(write_config(tmp_path, "facs:\n  max_gap: 3\n"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.name=tin", r"--set: model.name: 'tin' is not one of official, tiny; did you mean 'tiny'\?"),
        ("model.precision=fp8", r"model.precision: 'fp8' is not one of"),
        ("faces.max_gap=1.5", r"faces.max_gap: expected int, got 1.5"),
        ("faces.max_gap=-1", r"--set: faces.max_gap=-1: set it >= 0"),
        ("model.batch_windows=0", r"--set: model.batch_windows: 0 is below the minimum 1"),
        ("encode.crf=true", r"encode.crf: expected int, got True"),
        ("encode.crf=60", r"encode.crf: 60 is above the maximum 51"),
        ("faces.detector=null", r"faces.detector: must be set"),
        ("scenes.detector=contnet", r"did you mean 'content'\?"),
        ("faces.max_gap", r"write it as section.key=value"),
        ("max_gap=3", r"write it as section.key=value"),
    ],
)
def test_bad_overrides_are_refused_with_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(None, [override])


def test_wrong_type_in_file_names_the_file(tmp_path):
    path = write_config(tmp_path, "scenes:\n  max_clip_frames: many\n")
    with pytest.raises(ConfigError, match=rf"{path}: scenes.max_clip_frames: expected int, got 'many'"):
        load_settings(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write_config(tmp_path, "faces: [unclosed\n"))
    with pytest.raises(ConfigError, match="faces: expected a mapping"):
        load_settings(write_config(tmp_path, "faces: 3\n"))


def test_empty_file_keeps_defaults(tmp_path):
    assert load_settings(write_config(tmp_path, "")) == Settings()


def test_faces_section_is_the_face_code_s_own_settings(tmp_path):
    """One definition: the faces section is pipeline.faces.FaceSettings, with its own range checks."""
    from pipeline.faces import FaceSettings

    smoke = load_settings(named_config("smoke"))
    assert isinstance(smoke.faces, FaceSettings) and smoke.faces.detector == "retinaface_mobile0.25"
    assert set(load_settings().to_dict()["faces"]) == {f.name for f in dataclasses.fields(FaceSettings)}

    path = write_config(tmp_path, "faces:\n  detect_every: 2\n")
    with pytest.raises(ConfigError, match=r"^--set: faces.score_threshold=1.5"):
        load_settings(path, ["faces.score_threshold=1.5"])
    with pytest.raises(ConfigError, match=rf"^{path}: faces.detector='yolo'"):
        load_settings(write_config(tmp_path, "faces:\n  detector: yolo\n"))


def test_check_local_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det.pth").write_bytes(b"x")
    check_local_files(load_settings(None, ["faces.detector_weights=det.pth", "model.weights=synthetic:0"]))
    check_local_files(load_settings(None, ["model.weights=s3://bucket/dptempcoh.pth"]))
    with pytest.raises(ConfigError, match="faces.detector_weights: file 'missing.pth' does not exist"):
        check_local_files(load_settings(None, ["faces.detector_weights=missing.pth"]))


def test_smoke_weights_resolve_from_the_repository_root(shared_dir, monkeypatch):
    monkeypatch.chdir(named_config("smoke").parents[1])
    beside = Path("../shared/weights/retinaface_mobile0.25.pth")  # where smoke.yaml names them
    if not beside.is_file():
        shared_missing(f"{beside.resolve()} is absent: smoke.yaml's path needs ../shared beside the checkout")
    check_local_files(load_settings(named_config("smoke")))
