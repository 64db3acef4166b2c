"""Settings of a dpt-batch run: one typed schema, loaded from YAML plus `--set key=value` overrides.

A run's settings come from three layers, later ones winning:

1. the defaults of the dataclasses below (the production setup, identical to configs/default.yaml);
2. a YAML file (`--config FILE`) that names any subset of the sections and keys;
3. `--set section.key=value` overrides, whose values are parsed as YAML scalars
   (`--set faces.max_gap=8`, `--set model.weights=null`, `--set model.weights=synthetic:0`).

Everything is validated when loaded, before any work starts: an unknown key, a value of the wrong
type or outside its choices raises a ConfigError that names the key, where it came from (the file or
`--set`) and what to write instead.

Relative paths in a config (`faces.detector_weights`, `model.weights`) are kept as written and
resolve against the current directory, not the config file's folder: the README runs every command
from the repository root, so `../shared/weights/...` in configs/smoke.yaml means the same thing on a
command line and in the file. `check_local_files` checks them before a run starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pipeline.faces.settings import FaceSettings

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

MODEL_NAMES = ("official", "tiny")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DEVICES = ("auto", "cpu", "cuda")
SCENE_DETECTORS = ("content", "adaptive")
CODECS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc")
NVENC_CODECS = ("h264_nvenc", "hevc_nvenc")
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
PIXEL_FORMATS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")
SYNTHETIC_PREFIX = "synthetic:"


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it and the fix."""


def _choice(default: Any, choices: tuple) -> Any:
    return field(default=default, metadata={"choices": choices})


def _at_least(default: Any, low: float) -> Any:
    return field(default=default, metadata={"min": low})


def _between(default: Any, low: float, high: float) -> Any:
    return field(default=default, metadata={"min": low, "max": high})


@dataclass(frozen=True)
class ModelSettings:
    """Which DP-TempCoh network restores the faces, and how it runs.

    Attributes:
        name: registered configuration: "official" (the released network) or "tiny" (tests, smoke runs).
        weights: where the weights come from: a local path, an fsspec URL, null to resolve the official
            checkpoint from the cache or the hub, or "synthetic:SEED" for deterministic random weights.
        precision: compute precision: fp32, bf16, fp16, or auto (bf16 on a GPU that has it, else fp32).
        device: auto (CUDA when present), cpu or cuda.
        batch_windows: temporal windows per forward pass.
    """

    name: str = _choice("official", MODEL_NAMES)
    weights: str | None = None
    precision: str = _choice("auto", PRECISIONS)
    device: str = _choice("auto", DEVICES)
    batch_windows: int = _at_least(4, 1)


@dataclass(frozen=True)
class ScenesSettings:
    """How a video is cut into scene clips.

    Attributes:
        detector: PySceneDetect detector: "content" (ContentDetector) or "adaptive" (AdaptiveDetector).
        threshold: the detector's threshold (content: frame score, default 27; adaptive: score ratio,
            default 3); null keeps the detector's own default.
        min_scene_len: shortest scene in frames; cuts closer than this to the previous one are merged.
        max_clip_frames: longest clip in frames; longer shots are split into near-equal clips.
        analysis_width: frames are decoded at this width (aspect kept) for cut detection; 0: full size.
    """

    detector: str = _choice("content", SCENE_DETECTORS)
    threshold: float | None = None
    min_scene_len: int = _at_least(15, 1)
    max_clip_frames: int = _at_least(300, 1)
    analysis_width: int = _at_least(256, 0)


@dataclass(frozen=True)
class EncodeSettings:
    """How restored clips are encoded (ffmpeg).

    Attributes:
        codec: ffmpeg video encoder: libx264, libx265, or NVIDIA's hardware encoders h264_nvenc and
            hevc_nvenc (GPUs with a video encoder: L4, L40S, A10 ...; H100 and H200 have none; checked
            on every node before a run starts).
        crf: constant rate factor, 0 (lossless) to 51; 18 is visually lossless for x264 (NVENC: its
            constant-quality level, -cq).
        preset: encoder speed/size trade-off: ultrafast ... placebo for libx264/libx265, p1 (fastest)
            ... p7 (best) for NVENC.
        pix_fmt: output pixel format; yuv420p plays everywhere (and needs even width and height).
            NVENC writes 4:2:0 or 4:4:4, and 10 bits with hevc_nvenc only.
    """

    codec: str = _choice("libx264", CODECS)
    crf: int = _between(18, 0, 51)
    preset: str = _choice("veryfast", X264_PRESETS + NVENC_PRESETS)
    pix_fmt: str = _choice("yuv420p", PIXEL_FORMATS)

    def __post_init__(self) -> None:
        nvenc = self.codec in NVENC_CODECS
        if nvenc != (self.preset in NVENC_PRESETS):
            wanted = "p1 (fastest) to p7 (best), e.g. p5" if nvenc else "ultrafast ... placebo, e.g. veryfast"
            raise ConfigError(f"encode.preset={self.preset!r} does not fit encode.codec={self.codec}: "
                              f"set encode.preset to {wanted}")  # fmt: skip
        if nvenc and "422" in self.pix_fmt:
            raise ConfigError(
                f"encode.pix_fmt={self.pix_fmt}: NVENC writes 4:2:0 or 4:4:4; choose yuv420p or yuv444p"
            )
        if self.codec == "h264_nvenc" and self.pix_fmt.endswith("10le"):
            raise ConfigError(
                f"encode.pix_fmt={self.pix_fmt}: h264_nvenc writes 8 bits; use hevc_nvenc for 10 bits"
            )


@dataclass(frozen=True)
class ClusterSettings:
    """How the stages map onto the Ray cluster. None of these change a pixel of the output.

    Restoration actors ask for one GPU each (one CPU each when DP-TempCoh runs on CPUs); face and
    encode actors ask for one CPU each and never for a GPU. A pool grows from its min to its max
    actors as work arrives; a max of 0 sizes it from the cluster at the start of the run.

    Attributes:
        faces_min_actors, faces_max_actors: face detection and alignment (0: the CPUs' share by the
            stage's cost per frame, pipeline.costs).
        restore_min_actors, restore_max_actors: DP-TempCoh (0: one per GPU; one without GPUs).
        encode_min_actors, encode_max_actors: paste-back and encoding (0: the CPUs' share by cost).
        wait_for_gpus: with model.device=cuda, schedule restoration on GPU actors even while the
            cluster has no GPU yet (an autoscaling cluster adds GPU nodes on demand); otherwise such
            a run is refused before it starts.
        restore_cpu_threads: torch threads of a restoration actor that runs on CPUs (0: every CPU that
            Ray counts on its node). On CPUs restoration costs hundreds of times what the other
            stages cost per frame and they wait on it, so by default it takes the cores they leave
            idle; the system shares them whenever those stages have work.
        actor_memory_gb: memory (GiB) each face and encode actor, and a restoration actor on CPUs,
            asks Ray for (0: none, Ray's default). Ray then starts no more of them on a node than its
            memory holds, and pools sized from the cluster stay within its memory. For nodes with
            little memory per CPU: actors held 1.6-2.8 GiB each at 1080p (README, Sizing).
    """

    faces_min_actors: int = _at_least(1, 1)
    faces_max_actors: int = _at_least(0, 0)
    restore_min_actors: int = _at_least(1, 1)
    restore_max_actors: int = _at_least(0, 0)
    encode_min_actors: int = _at_least(1, 1)
    encode_max_actors: int = _at_least(0, 0)
    wait_for_gpus: bool = False
    restore_cpu_threads: int = _at_least(0, 0)
    actor_memory_gb: float = _at_least(0.0, 0.0)


@dataclass(frozen=True)
class Settings:
    """All settings of a run, one section per part of the pipeline.

    The faces section is pipeline.faces.FaceSettings itself (its docstring says what each key means),
    so the config file and the face code share one definition; it is imported on first use because
    it pulls in torch.
    """

    model: ModelSettings = field(default_factory=ModelSettings)
    faces: FaceSettings = field(default_factory=lambda: _face_settings_class()())
    scenes: ScenesSettings = field(default_factory=ScenesSettings)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (YAML/JSON ready), e.g. to record a run's settings in its catalog."""
        return dataclasses.asdict(self)


def load_settings(config: str | Path | None = None, overrides: Iterable[str] = ()) -> Settings:
    """Settings from a YAML file (or the defaults when None) with `key=value` overrides applied.

    Args:
        config: path of a YAML file, e.g. configs/smoke.yaml; None keeps the defaults (= default.yaml).
        overrides: strings "section.key=value"; values are parsed as YAML scalars.

    Raises:
        ConfigError: the file is missing or not YAML, or a key, type or value is invalid.
    """
    tree: dict[str, dict[str, tuple[Any, str]]] = {}
    if config is not None:
        source = str(config)
        for section, key, value in _read_yaml_entries(Path(config)):
            tree.setdefault(section, {})[key] = (value, source)
    for section, key, value in parse_overrides(overrides):
        tree.setdefault(section, {})[key] = (value, "--set")
    return _build_settings(tree)


def named_config(name: str) -> Path:
    """Path of a config shipped in configs/ ("default", "smoke")."""
    return CONFIG_DIR / f"{name}.yaml"


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, str, Any]]:
    """("section", "key", value) for each "section.key=value" string; the value is a YAML scalar."""
    entries = []
    for text in overrides:
        dotted, sep, raw = text.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot or not section or not key or "." in key:
            raise ConfigError(f"--set {text!r}: write it as section.key=value, e.g. --set faces.max_gap=8")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {text!r}: the value is not a YAML scalar ({error})") from None
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--set {text!r}: give one value (number, string, true/false, null)")
        entries.append((section, key, value))
    return entries


def check_local_files(settings: Settings) -> None:
    """Raise ConfigError when a weights path that names a local file does not exist.

    URLs ("s3://...", "https://..."), null (resolved from cache/hub) and "synthetic:SEED" are left to
    the code that loads them. Relative paths resolve against the current directory.
    """
    for key, value in (
        ("model.weights", settings.model.weights),
        ("faces.detector_weights", settings.faces.detector_weights),
        ("faces.parsing_weights", settings.faces.parsing_weights),
    ):
        if value is None or "://" in value or value.startswith(SYNTHETIC_PREFIX):
            continue
        if not Path(value).is_file():
            raise ConfigError(
                f"{key}: file {value!r} does not exist (relative paths resolve against the current "
                f"directory {Path.cwd()}); fix the path or set it to null to use the cache/hub"
            )


def _read_yaml_entries(path: Path) -> list[tuple[str, str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections (model:, faces:, ...), got {_kind(data)}")
    entries = []
    for section, body in data.items():
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path}: {section}: expected a mapping of settings, got {_kind(body)}")
        entries.extend((str(section), str(key), value) for key, value in body.items())
    return entries


def section_classes() -> dict[str, type]:
    """Section name -> the dataclass that holds it, in the order of Settings."""
    return {
        "model": ModelSettings,
        "faces": _face_settings_class(),
        "scenes": ScenesSettings,
        "encode": EncodeSettings,
        "cluster": ClusterSettings,
    }


def _face_settings_class() -> type[FaceSettings]:
    from pipeline.faces.settings import FaceSettings

    return FaceSettings


def _build_settings(tree: dict[str, dict[str, tuple[Any, str]]]) -> Settings:
    section_types = section_classes()
    sections = {}
    for section, entries in tree.items():
        if section not in section_types:
            source = next(iter(entries.values()))[1]
            close = _closest(section, section_types)
            hint = f"; did you mean {close}?" if close else ""
            known = ", ".join(section_types)
            raise ConfigError(f"{source}: {section}: unknown section{hint} (known: {known})")
        sections[section] = _build_section(section, section_types[section], entries)
    return Settings(**sections)


def _build_section(section: str, cls: type, entries: dict[str, tuple[Any, str]]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, (value, source) in entries.items():
        name = f"{section}.{key}"
        if key not in known:
            close = _closest(key, known)
            hint = f"; did you mean {section}.{close}?" if close else ""
            raise ConfigError(f"{source}: {name}: unknown setting{hint} (known: {', '.join(known)})")
        values[key] = _check_value(name, source, value, hints[key], known[key].metadata)
    try:
        return cls(**values)
    except ValueError as error:  # the section's own range checks (FaceSettings.__post_init__)
        named = re.match(rf"{section}\.(\w+)", str(error))
        if named and named.group(1) in entries:
            source = entries[named.group(1)][1]
        else:
            source = " / ".join(sorted({source for _, source in entries.values()}))
        raise ConfigError(f"{source}: {error}") from None


def _check_value(name: str, source: str, value: Any, hint: Any, metadata: Mapping[str, Any]) -> Any:
    allowed = _allowed_types(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {name}: must be set (null is not allowed here)")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not any(type(value) is t for t in allowed):
        wanted = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise ConfigError(f"{source}: {name}: expected {wanted}, got {value!r} ({type(value).__name__})")
    choices = metadata.get("choices")
    if choices and value not in choices:
        close = _closest(str(value), choices)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ConfigError(f"{source}: {name}: {value!r} is not one of {', '.join(choices)}{hint}")
    if "min" in metadata and value < metadata["min"]:
        raise ConfigError(f"{source}: {name}: {value!r} is below the minimum {metadata['min']}")
    if "max" in metadata and value > metadata["max"]:
        raise ConfigError(f"{source}: {name}: {value!r} is above the maximum {metadata['max']}")
    return value


def _allowed_types(hint: Any) -> tuple[type, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return close[0] if close else None


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
