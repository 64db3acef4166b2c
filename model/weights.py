"""Where the network's weights come from, and how they get into it.

A weights *spec* (`model.weights` in the settings) is one of:

- None: the official checkpoint `net_g_v1.pth`, from the cache folder (`$DPT_CACHE_DIR`, default
  `~/.cache/dpt-batch`) or, when missing there, downloaded from the Hugging Face hub into it;
- a local path to a checkpoint;
- an fsspec URL (`s3://`, `gs://`, `file://`, `memory://` ...), copied once into the cache and
  verified by sha256 against a `<url>.sha256` sidecar when the source has one;
- `synthetic:SEED`: deterministic name-keyed random weights (see `fill_synthetic_`).

`resolve_weights` turns a spec into a local file (or a seed), `load_weights_` puts it into a network,
`verify_weights` checks a file against the official network. Checkpoints are read with
`torch.load(weights_only=True)`, so a file cannot run code when loaded.
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are touched: resolving and hashing need none of it
    import torch
    from torch import nn

HUB_REPO_ID = "xcc98/DP-TempCoh"
WEIGHTS_FILENAME = "net_g_v1.pth"
CACHE_ENV = "DPT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/dpt-batch")
SYNTHETIC_PREFIX = "synthetic:"
SIDECAR_SUFFIX = ".sha256"
DOWNLOAD_COMMAND = "dpt-batch weights download"
OVERRIDE_HINT = "--set model.weights=/path/to/net_g_v1.pth"
# Seconds to wait for the hub to answer before treating the machine as offline.
HUB_TIMEOUT_S = 10.0
CHECKPOINT_KEYS = ("params_ema", "params")
_LISTED_NAMES = 20
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """Weights cannot be found, fetched or loaded; the message names the file and the fix."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file where the spec points (or none in the cache while offline)."""


class WeightsIntegrityError(WeightsError):
    """A copied file's sha256 differs from the digest its source published."""


class WeightsMismatchError(WeightsError):
    """A state dict's names or shapes differ from the network's.

    Attributes:
        missing: names the network has and the file lacks.
        unexpected: names the file has and the network lacks.
        mismatched: (name, shape in the file, shape in the network) for names in both.
    """

    def __init__(
        self,
        message: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights spec made concrete.

    Attributes:
        identity: sha256 hex digest of the file, or "synthetic:SEED"; the same identity means the
            same weights, so it is what run records and caches key on.
        path: the local file to load (None for synthetic weights).
        source: "path", "url", "cache", "hub" or "synthetic".
        origin: what the weights were resolved from (the path, URL, hub file or spec as given).
    """

    identity: str
    path: Path | None
    source: str
    origin: str

    @property
    def synthetic_seed(self) -> int | None:
        if self.source != "synthetic":
            return None
        return int(self.identity.removeprefix(SYNTHETIC_PREFIX))


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_weights` found in a file that loads strictly into the network."""

    path: Path
    sha256: str
    parameters: int
    tensors: int
    model: str


# ---------------------------------------------------------------------------------------------------
# resolving a spec to a file


def cache_dir_from_env(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir` if given, else `$DPT_CACHE_DIR`, else `~/.cache/dpt-batch`."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def resolve_weights(
    spec: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
) -> ResolvedWeights:
    """Turn a weights spec into a local file (or a synthetic seed), fetching it once if needed.

    Args:
        spec: None (official checkpoint: cache, else hub), a local path, an fsspec URL or
            "synthetic:SEED".
        cache_dir: the cache folder (default `$DPT_CACHE_DIR` or `~/.cache/dpt-batch`).
        expected_sha256: digest a URL's copy must have; without it, a `<url>.sha256` sidecar is used
            when the source has one.

    Raises:
        WeightsNotFoundError: the file is absent, or not cached while the hub is unreachable.
        WeightsIntegrityError: a copied file's digest differs from the published one.
    """
    cache = cache_dir_from_env(cache_dir)
    if spec is None or str(spec).strip() == "":
        return _resolve_official(cache)
    text = os.fspath(spec)
    if text.startswith(SYNTHETIC_PREFIX):
        return ResolvedWeights(f"{SYNTHETIC_PREFIX}{parse_synthetic_seed(text)}", None, "synthetic", text)
    if "://" in text:
        return _resolve_url(text, cache, expected_sha256)
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file {text} does not exist (relative paths resolve against {Path.cwd()}); "
            f"fix the path, or set model.weights=null to use the official checkpoint from {cache}"
        )
    return ResolvedWeights(file_sha256(path), path, "path", text)


def parse_synthetic_seed(spec: str) -> int:
    """The integer SEED of "synthetic:SEED"."""
    raw = spec.removeprefix(SYNTHETIC_PREFIX).strip()
    try:
        return int(raw)
    except ValueError:
        raise WeightsError(
            f"weights {spec!r}: write synthetic weights as synthetic:SEED, e.g. synthetic:0"
        ) from None


def describe_resolution(spec: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> str:
    """Say where `resolve_weights(spec)` would take the weights from, without fetching anything.

    Raises WeightsNotFoundError where resolving would fail for want of a file (offline, not cached).
    """
    cache = cache_dir_from_env(cache_dir)
    if spec is not None and str(spec).strip() != "":
        text = os.fspath(spec)
        if text.startswith(SYNTHETIC_PREFIX):
            return f"synthetic weights, seed {parse_synthetic_seed(text)} (nothing to fetch)"
        if "://" in text:
            copy = _url_cache_path(text, cache)
            state = "cached" if copy.is_file() else "not cached yet, copied on first use"
            return f"{copy} (copy of {text}; {state})"
        path = Path(text).expanduser()
        if not path.is_file():
            resolve_weights(text, cache)  # raises the not-found error with its fix
        return str(path.resolve())
    official = cache / WEIGHTS_FILENAME
    if official.is_file():
        return str(official)
    if hub_offline():
        raise WeightsNotFoundError(_not_found_message(cache, "HF_HUB_OFFLINE is set"))
    return f"{official} (not cached yet; downloaded from the hub {HUB_REPO_ID} on first use)"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids hub downloads, read now, not at import."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def download_official(cache_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """Make sure the official checkpoint is in the cache folder, downloading it from the hub if not."""
    return _resolve_official(cache_dir_from_env(cache_dir))


def _resolve_official(cache: Path) -> ResolvedWeights:
    path = cache / WEIGHTS_FILENAME
    if path.is_file():
        return ResolvedWeights(file_sha256(path, record=True), path, "cache", str(path))
    downloaded = _download_from_hub(cache)
    origin = f"{HUB_REPO_ID}/{WEIGHTS_FILENAME}"
    return ResolvedWeights(file_sha256(downloaded, record=True), downloaded, "hub", origin)


def _not_found_message(cache: Path, reason: str) -> str:
    return (
        f"the official DP-TempCoh weights {WEIGHTS_FILENAME} are not in the cache folder {cache} and "
        f"cannot be downloaded from the Hugging Face hub ({HUB_REPO_ID}): {reason}. "
        f"Fetch them on a machine with internet access with `{DOWNLOAD_COMMAND}` "
        f"(set {CACHE_ENV} to choose the folder, or `{DOWNLOAD_COMMAND} --to DIR_OR_URL`), "
        f"or point the run at a copy you have: {OVERRIDE_HINT}"
    )


def _download_from_hub(cache: Path) -> Path:
    if hub_offline():
        raise WeightsNotFoundError(_not_found_message(cache, "HF_HUB_OFFLINE is set"))
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: huggingface_hub reads it at import
    url = hf_hub_url(HUB_REPO_ID, WEIGHTS_FILENAME, endpoint=endpoint)
    try:
        # One HEAD request without retries first: hf_hub_download retries a dead network with backoff
        # for about 25 s before giving up, which is too long to learn that a machine is offline.
        get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S, endpoint=endpoint)
        cache.mkdir(parents=True, exist_ok=True)
        # local_dir puts the file at cache/net_g_v1.pth; the hub client writes it under a temporary name
        # and renames it, so a reader never sees half a file.
        downloaded = hf_hub_download(
            HUB_REPO_ID, WEIGHTS_FILENAME, local_dir=cache, etag_timeout=HUB_TIMEOUT_S, endpoint=endpoint
        )
    except _hub_unreachable_errors() as error:
        reason = f"the hub is unreachable ({_first_line(error)})"
        raise WeightsNotFoundError(_not_found_message(cache, reason)) from None
    except _hub_http_errors() as error:
        raise WeightsError(f"the hub refused {url}: {_first_line(error)}") from None
    return Path(downloaded)


def _hub_unreachable_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    errors: tuple[type[BaseException], ...] = (
        LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError,
    )
    for module_name in ("httpx2", "httpx"):  # the transport huggingface_hub uses, by version
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors += (module.TransportError,)
    return errors


def _hub_http_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError,)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# ---------------------------------------------------------------------------------------------------
# fsspec URLs: copied once into the cache, verified, renamed into place


def _url_cache_path(url: str, cache: Path) -> Path:
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = url.rstrip("/").rsplit("/", 1)[-1] or WEIGHTS_FILENAME
    return cache / "urls" / key / name


def _resolve_url(url: str, cache: Path, expected_sha256: str | None) -> ResolvedWeights:
    copy = _url_cache_path(url, cache)
    expected = expected_sha256.lower() if expected_sha256 else None
    if copy.is_file():
        digest = file_sha256(copy, record=True)
        if expected is None or digest == expected:
            return ResolvedWeights(digest, copy, "url", url)
        # the cached copy is of another version than asked for: fetch again
    fs, remote = _url_to_fs(url)
    if not fs.isfile(remote):
        raise WeightsNotFoundError(
            f"weights file {url} does not exist (or is not a file); fix the URL, or set "
            f"model.weights=null to use the official checkpoint from {cache}"
        )
    if expected is None:
        expected = _read_remote_sidecar(fs, remote)
    digest = _copy_atomically(fs, remote, copy, expected, url)
    _write_sidecar(copy, digest)
    return ResolvedWeights(digest, copy, "url", url)


def _url_to_fs(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise WeightsError(f"weights URL {url}: {error}") from None


def _read_remote_sidecar(fs, remote: str) -> str | None:
    sidecar = remote + SIDECAR_SUFFIX
    if not fs.isfile(sidecar):
        return None
    text = fs.cat_file(sidecar).decode().strip()
    return text.split()[0].lower() if text else None


def _copy_atomically(fs, remote: str, destination: Path, expected: str | None, url: str) -> str:
    """Stream `remote` into a temporary file beside `destination`, check its sha256, rename it.

    A copy whose digest differs from `expected` is deleted and never replaces `destination`.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    try:
        with fs.open(remote, "rb") as source, open(temporary, "wb") as sink:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                sink.write(chunk)
        if expected is not None and digest.hexdigest() != expected:
            raise WeightsIntegrityError(
                f"weights file {url} has sha256 {digest.hexdigest()}, but its published digest is "
                f"{expected}: the copy is corrupt or the file changed; it was not kept in the cache"
            )
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return digest.hexdigest()


def publish_weights(path: str | os.PathLike, destination: str) -> str:
    """Copy a local weights file to a folder or fsspec URL, with a `.sha256` sidecar beside it.

    A destination ending in "/" or naming an existing folder receives the file under its own name.
    Returns the URL or path written.
    """
    source = Path(path)
    fs, remote = _url_to_fs(destination)
    if destination.endswith("/") or fs.isdir(remote):
        remote = remote.rstrip("/") + "/" + source.name
        destination = destination.rstrip("/") + "/" + source.name
    parent = remote.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(str(source), remote)
    fs.pipe_file(remote + SIDECAR_SUFFIX, f"{file_sha256(source)}  {source.name}\n".encode())
    return destination


# ---------------------------------------------------------------------------------------------------
# digests


def file_sha256(path: str | os.PathLike, record: bool = False) -> str:
    """sha256 hex digest of a file.

    With record=True the digest is kept in a `<file>.sha256` sidecar (sha256sum's format) and reused
    while the sidecar is newer than the file, so cached 1.4 GB checkpoints are hashed once.
    """
    path = Path(path)
    if record and (recorded := _recorded_sha256(path)):
        return recorded
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if record:
        _write_sidecar(path, hexdigest)
    return hexdigest


def _write_sidecar(path: Path, hexdigest: str) -> None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    temporary = sidecar.with_name(f".{sidecar.name}.{uuid.uuid4().hex}.part")
    temporary.write_text(f"{hexdigest}  {path.name}\n")
    os.replace(temporary, sidecar)


# ---------------------------------------------------------------------------------------------------
# reading and loading state dicts


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint on the CPU and return its state dict.

    Accepts upstream's layout (`{"params_ema": ...}`, preferred, or `{"params": ...}`) and a bare
    state dict; a leading "module." (from DataParallel) is stripped from every name.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling, zip and format errors all mean "not a checkpoint"
        raise WeightsError(
            f"weights file {path} is not a readable PyTorch checkpoint: {_first_line(error)}"
        ) from None
    state_dict = _select_state_dict(checkpoint, path)
    return {name.removeprefix("module."): tensor for name, tensor in state_dict.items()}


def _select_state_dict(checkpoint: object, path: Path) -> Mapping[str, torch.Tensor]:
    import torch

    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"weights file {path} holds a {type(checkpoint).__name__}, not a state dict")
    for key in CHECKPOINT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    not_tensors = [str(name) for name, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsError(
            f"weights file {path} has neither {' nor '.join(CHECKPOINT_KEYS)} nor only tensors at its top "
            f"level (found {', '.join(not_tensors[:_LISTED_NAMES])})"
        )
    return checkpoint


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | os.PathLike | None = None,
    assign: bool = False,
) -> nn.Module:
    """Load a state dict strictly: every name and shape of the network, nothing else.

    Args:
        source: the file the state dict came from, named in the error.
        assign: keep the file's tensors instead of copying into the network's (for a network built
            on the "meta" device).

    Raises:
        WeightsMismatchError: names missing or unexpected, or shapes differing, all listed.
    """
    expected = model.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    mismatched = [
        (name, tuple(state_dict[name].shape), tuple(tensor.shape))
        for name, tensor in expected.items()
        if name in state_dict and tuple(state_dict[name].shape) != tuple(tensor.shape)
    ]
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(
            _mismatch_message(model, source, missing, unexpected, mismatched), missing, unexpected, mismatched
        )
    model.load_state_dict(state_dict, strict=True, assign=assign)
    return model


def _mismatch_message(model, source, missing, unexpected, mismatched) -> str:
    what = f"weights file {source}" if source is not None else "the state dict"
    lines = [
        f"{what} does not fit the network {type(model).__name__}: {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with another shape "
        f"(is it a DP-TempCoh {WEIGHTS_FILENAME} for this model configuration?)"
    ]
    for label, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            more = f", ... and {len(names) - _LISTED_NAMES} more" if len(names) > _LISTED_NAMES else ""
            lines.append(f"  {label} ({len(names)}): {', '.join(names[:_LISTED_NAMES])}{more}")
    if mismatched:
        shown = [f"{name} file {list(a)} network {list(b)}" for name, a, b in mismatched[:_LISTED_NAMES]]
        more = f", ... and {len(mismatched) - _LISTED_NAMES} more" if len(mismatched) > _LISTED_NAMES else ""
        lines.append(f"  other shape ({len(mismatched)}): {'; '.join(shown)}{more}")
    return "\n".join(lines)


def load_weights_(
    model: nn.Module, spec: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None
) -> ResolvedWeights:
    """Resolve a weights spec and put the weights into `model` in place; returns what was loaded."""
    return load_resolved_(model, resolve_weights(spec, cache_dir))


def load_resolved_(model: nn.Module, resolved: ResolvedWeights) -> ResolvedWeights:
    """Put weights that were resolved already (on this node: see `on_this_node`) into `model`."""
    if resolved.path is None:
        fill_synthetic_(model, resolved.synthetic_seed)
    else:
        load_into(model, load_state_dict_file(resolved.path), source=resolved.path)
    return resolved


def on_this_node(resolved: ResolvedWeights, cache_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """The weights that another process (the driver) resolved, as a file this node can read, without
    hashing it again: a path or cached file that is here is taken as it is; a URL or the official
    checkpoint is taken from this node's cache when its recorded digest is the driver's, else fetched
    into it and checked against that digest."""
    if resolved.source == "synthetic":
        return resolved
    cache = cache_dir_from_env(cache_dir)
    if resolved.source == "url":
        copy = _url_cache_path(resolved.origin, cache)
        if copy.is_file() and _recorded_sha256(copy) == resolved.identity:
            return ResolvedWeights(resolved.identity, copy, "url", resolved.origin)
        return _resolve_url(resolved.origin, cache, resolved.identity)
    if resolved.source in ("cache", "hub"):
        official = cache / WEIGHTS_FILENAME
        if official.is_file() and _recorded_sha256(official) == resolved.identity:
            return ResolvedWeights(resolved.identity, official, resolved.source, resolved.origin)
        fetched = _resolve_official(cache)
        if fetched.identity != resolved.identity:
            raise WeightsIntegrityError(
                f"the official weights on this node ({fetched.path}, sha256 {fetched.identity}) are not "
                f"the ones the run started with (sha256 {resolved.identity}); put the same file in every "
                f"node's cache, or give model.weights as a path or URL every node reads"
            )
        return fetched
    if resolved.path is None or not resolved.path.is_file():
        raise WeightsNotFoundError(
            f"weights file {resolved.origin} does not exist on this node; give model.weights as a path "
            "every node of the cluster reads (shared storage), or as a URL (s3://...)"
        )
    return resolved


def _recorded_sha256(path: Path) -> str | None:
    """The digest in a file's `.sha256` sidecar while it is newer than the file; None otherwise."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file() or sidecar.stat().st_mtime_ns < path.stat().st_mtime_ns:
        return None
    recorded = sidecar.read_text().split()
    return recorded[0].lower() if recorded and len(recorded[0]) == 64 else None


# ---------------------------------------------------------------------------------------------------
# synthetic weights


def fill_synthetic_(model: nn.Module | Mapping[str, torch.Tensor], seed: int = 0) -> nn.Module | Mapping:
    """Fill every floating tensor of the state dict with name-keyed random values, in place.

    The rule of the parity fixture (shared/parity/fill_weights.py): each tensor is drawn in float64
    from a generator seeded by `seed * 1_000_003 + crc32(name)`; the motion codebook as
    (mean, variance) pairs, 1-D weights around 1, 1-D biases around 0, other tensors with
    standard deviation 1/sqrt(fan-in). Two networks with the same names and shapes get the same weights.
    """
    import torch

    state_dict = model.state_dict() if isinstance(model, torch.nn.Module) else model
    with torch.no_grad():
        for name in sorted(state_dict):
            tensor = state_dict[name]
            if torch.is_floating_point(tensor):
                tensor.copy_(_synthetic_values(name, tuple(tensor.shape), seed).to(tensor.dtype))
    return model


def _synthetic_values(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    if name.endswith("motion_quantize.embedding.weight"):
        # interleaved per-frame (mean, variance) of codebook features; variances positive
        f64 = torch.float64
        values = torch.empty(shape, dtype=f64)
        values[:, 0::2] = 0.016 * torch.randn(values[:, 0::2].shape, generator=generator, dtype=f64)
        values[:, 1::2] = 0.04 + 0.05 * torch.rand(values[:, 1::2].shape, generator=generator, dtype=f64)
        return values
    if len(shape) <= 1 and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator, dtype=torch.float64)
    if len(shape) <= 1:
        return 0.02 * torch.randn(shape, generator=generator, dtype=torch.float64)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator, dtype=torch.float64) / math.sqrt(fan_in)


# ---------------------------------------------------------------------------------------------------
# verifying a file against the network


def verify_weights(path: str | os.PathLike, model_name: str = "official") -> VerifyReport:
    """Load a file strictly into the named network and report its digest and size.

    The network is built on the "meta" device and takes the file's tensors as they are, so checking
    the 1.4 GB official checkpoint needs no second copy of it in memory.

    Raises:
        WeightsMismatchError: the names missing and unexpected, and shapes that differ.
        WeightsError: the file is unreadable or holds NaN or infinite values.
    """
    import torch

    from model.registry import build_model

    path = Path(path)
    state_dict = load_state_dict_file(path)
    with torch.device("meta"):
        network = build_model(model_name)
    load_into(network, state_dict, source=path, assign=True)
    not_finite = [
        name for name, tensor in state_dict.items()
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all())
    ]
    if not_finite:
        raise WeightsError(
            f"weights file {path} holds NaN or infinite values in {len(not_finite)} tensors: "
            f"{', '.join(not_finite[:_LISTED_NAMES])}"
        )
    return VerifyReport(
        path=path,
        sha256=file_sha256(path),
        parameters=sum(tensor.numel() for tensor in state_dict.values()),
        tensors=len(state_dict),
        model=model_name,
    )
