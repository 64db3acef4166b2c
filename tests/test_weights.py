"""Weights: where they come from (path > cache > hub, fsspec URLs), how they load, and the CLI over it.

The hub is played by a small HTTP server on 127.0.0.1 that answers the two requests huggingface_hub
makes (HEAD for metadata, GET for the bytes), so the real client code runs without the internet.
"""
from __future__ import annotations

import hashlib
import http.server
import importlib.util
import socket
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest
import torch
from click.testing import CliRunner
from shared_data import SHARED_DIR, shared_missing
from torch import nn

from model.weights import (
    WEIGHTS_FILENAME,
    ResolvedWeights,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsNotFoundError,
    describe_resolution,
    fill_synthetic_,
    load_into,
    load_state_dict_file,
    load_weights_,
    on_this_node,
    resolve_weights,
    verify_weights,
)
from pipeline.cli import main

SHARED_FILL = SHARED_DIR / "parity" / "fill_weights.py"


class StandIn(nn.Module):
    """A small network with the kinds of tensors the real one has: 4-D, 2-D, 1-D and an integer buffer."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3), nn.GroupNorm(2, width))
        self.head = nn.Linear(width, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class WithMotionCodebook(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self.motion_quantize = nn.Module()
        self.motion_quantize.embedding = nn.Embedding(6, 8)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(path: Path, seed: int, layout: str = "params_ema") -> Path:
    state_dict = fill_synthetic_(StandIn(), seed).state_dict()
    if layout == "params_ema":
        torch.save({"params_ema": state_dict}, path)
    elif layout == "params":
        torch.save({"params": state_dict}, path)
    elif layout == "bare":
        torch.save(state_dict, path)
    elif layout == "module":
        torch.save({f"module.{name}": tensor for name, tensor in state_dict.items()}, path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder as $DPT_CACHE_DIR, with the hub switched off unless a test starts one."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DPT_CACHE_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


class FakeHub:
    """Serves one file as https://huggingface.co/xcc98/DP-TempCoh/resolve/main/net_g_v1.pth would."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                if self.path.split("?")[0] != f"/xcc98/DP-TempCoh/resolve/main/{WEIGHTS_FILENAME}":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
                self.send_header("ETag", f'"{hashlib.sha256(hub.payload).hexdigest()}"')
                self.send_header("Content-Length", str(len(hub.payload)))
                self.end_headers()
                if body:
                    self.wfile.write(hub.payload)

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def downloads(self) -> int:
        return sum(1 for method, path in self.requests if method == "GET" and path.endswith(WEIGHTS_FILENAME))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(cache, tmp_path, monkeypatch):
    """A reachable hub serving a real checkpoint; HF_ENDPOINT points at it."""
    payload = save_checkpoint(tmp_path / "hub_copy.pth", seed=11).read_bytes()
    server = FakeHub(payload)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- resolution order: explicit path > cache > hub -------------------------------------------------


def test_an_explicit_path_wins_over_cache_and_hub(hub, cache, tmp_path):
    cache.mkdir()
    save_checkpoint(cache / WEIGHTS_FILENAME, seed=1)
    mine = save_checkpoint(tmp_path / "mine.pth", seed=2)

    resolved = resolve_weights(str(mine))

    assert resolved == ResolvedWeights(sha256_of(mine), mine, "path", str(mine))
    assert hub.requests == []


def test_the_cache_wins_over_the_hub(hub, cache):
    cache.mkdir()
    cached = save_checkpoint(cache / WEIGHTS_FILENAME, seed=1)

    resolved = resolve_weights(None)

    assert (resolved.source, resolved.path, resolved.identity) == ("cache", cached, sha256_of(cached))
    assert hub.requests == []


def test_the_hub_fills_an_empty_cache_once(hub, cache):
    first = resolve_weights(None)
    second = resolve_weights(None)

    assert first.source == "hub" and second.source == "cache"
    assert first.path == second.path == cache / WEIGHTS_FILENAME
    assert first.path.read_bytes() == hub.payload
    assert first.identity == second.identity == hashlib.sha256(hub.payload).hexdigest()
    assert hub.downloads() == 1, hub.requests
    assert set(load_state_dict_file(first.path)) == set(StandIn().state_dict())


def test_offline_without_weights_names_the_file_the_cache_and_the_fix(cache):
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_weights(None)

    message = str(caught.value)
    for needed in (WEIGHTS_FILENAME, str(cache), "dpt-batch weights download", "--set model.weights="):
        assert needed in message


def test_an_unreachable_hub_is_reported_within_seconds(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")

    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="unreachable") as caught:
        resolve_weights(None)

    assert time.monotonic() - started < 5
    assert "dpt-batch weights download" in str(caught.value)


def test_a_missing_explicit_path_is_named(cache, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth"):
        resolve_weights(str(tmp_path / "nowhere.pth"))


def test_synthetic_spec_needs_no_file(cache):
    resolved = resolve_weights("synthetic:5")
    assert (resolved.identity, resolved.path, resolved.synthetic_seed) == ("synthetic:5", None, 5)

    network = StandIn()
    load_weights_(network, "synthetic:5")
    assert torch.equal(network.head.weight, fill_synthetic_(StandIn(), 5).head.weight)


# --- fsspec URLs: copied into the cache once, verified against a sidecar ---------------------------


def put_in_memory(local: Path, sidecar: str | None) -> str:
    url = f"memory://weights-{uuid.uuid4().hex}/{local.name}"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(url, local.read_bytes())
    if sidecar is not None:
        fs.pipe_file(url + ".sha256", f"{sidecar}  {local.name}\n".encode())
    return url


def test_weights_the_driver_resolved_are_taken_on_a_node_without_hashing_again(cache, tmp_path, monkeypatch):
    import model.weights

    local = save_checkpoint(tmp_path / "remote.pth", seed=3)
    url = put_in_memory(local, sidecar=None)
    resolved = resolve_weights(url)  # the driver: copied into its cache and hashed while copied
    explicit = resolve_weights(str(local))  # the driver hashes a file given by its path
    hashed = []
    real_sha256 = model.weights.file_sha256
    monkeypatch.setattr(model.weights, "file_sha256", lambda path, record=False: hashed.append(path)
                        or real_sha256(path, record))  # fmt: skip

    node = tmp_path / "node-cache"  # another node: its own cache, nothing in it yet
    fetched = on_this_node(resolved, node)
    assert fetched.identity == resolved.identity and fetched.path.is_relative_to(node)
    assert fetched.path.read_bytes() == local.read_bytes()
    assert on_this_node(resolved, node) == fetched  # a later actor on the node takes the copy as it is
    assert on_this_node(resolved, cache) == resolved  # the driver's own node has it already
    assert on_this_node(explicit, node) == explicit  # a path is loaded where it is
    assert hashed == []  # no file was hashed again: digests were recorded when the copies were made

    fsspec.filesystem("memory").pipe_file(url, b"another version of the file")
    with pytest.raises(WeightsIntegrityError, match=resolved.identity):
        on_this_node(resolved, tmp_path / "third-node")  # a node never loads other weights than the driver's
    missing = ResolvedWeights(resolved.identity, tmp_path / "gone.pth", "path", str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsNotFoundError, match="does not exist on this node"):
        on_this_node(missing, node)


def test_a_url_is_copied_into_the_cache_once_and_verified(cache, tmp_path):
    local = save_checkpoint(tmp_path / "remote.pth", seed=3)
    url = put_in_memory(local, sidecar=sha256_of(local))

    first = resolve_weights(url)
    fsspec.filesystem("memory").rm(url)  # the copy serves from now on, the source is not read again
    second = resolve_weights(url)

    assert first == second
    assert first.source == "url" and first.identity == sha256_of(local)
    assert first.path.is_relative_to(cache) and first.path.read_bytes() == local.read_bytes()
    assert [p.name for p in first.path.parent.iterdir() if p.name.endswith(".part")] == []


def test_a_url_whose_sidecar_disagrees_is_refused_and_not_kept(cache, tmp_path):
    local = save_checkpoint(tmp_path / "remote.pth", seed=3)
    url = put_in_memory(local, sidecar="0" * 64)

    with pytest.raises(WeightsIntegrityError, match=url):
        resolve_weights(url)

    assert not any(path.is_file() for path in cache.rglob("*"))


def test_a_failed_refetch_leaves_the_good_cached_copy_in_place(cache, tmp_path):
    local = save_checkpoint(tmp_path / "remote.pth", seed=3)
    url = put_in_memory(local, sidecar=None)
    good = resolve_weights(url)

    with pytest.raises(WeightsIntegrityError):
        resolve_weights(url, expected_sha256="0" * 64)

    assert good.path.read_bytes() == local.read_bytes()
    assert resolve_weights(url) == good


def test_a_file_url_without_sidecar_is_copied_and_its_digest_recorded(cache, tmp_path):
    local = save_checkpoint(tmp_path / "remote.pth", seed=4)

    resolved = resolve_weights(local.as_uri())

    assert resolved.identity == sha256_of(local)
    assert resolved.path.with_name(resolved.path.name + ".sha256").read_text().split()[0] == resolved.identity


def test_a_missing_url_is_named(cache):
    url = f"memory://nothing-{uuid.uuid4().hex}/net_g_v1.pth"
    with pytest.raises(WeightsNotFoundError, match=url):
        resolve_weights(url)


# --- reading checkpoints and loading them strictly -------------------------------------------------


@pytest.mark.parametrize("layout", ["params_ema", "params", "bare", "module"])
def test_every_checkpoint_layout_loads(tmp_path, layout):
    path = save_checkpoint(tmp_path / f"{layout}.pth", seed=5, layout=layout)

    network = load_into(StandIn(), load_state_dict_file(path), source=path)

    assert torch.equal(network.encoder[0].weight, fill_synthetic_(StandIn(), 5).encoder[0].weight)


def test_params_ema_is_preferred_over_params(tmp_path):
    path = tmp_path / "both.pth"
    ema, plain = fill_synthetic_(StandIn(), 1).state_dict(), fill_synthetic_(StandIn(), 2).state_dict()
    torch.save({"params": plain, "params_ema": ema}, path)

    assert torch.equal(load_state_dict_file(path)["head.weight"], ema["head.weight"])


def test_a_checkpoint_with_a_renamed_and_a_missing_key_is_refused_naming_both(tmp_path):
    state_dict = fill_synthetic_(StandIn(), 0).state_dict()
    state_dict["head.kernel"] = state_dict.pop("head.weight")
    del state_dict["encoder.1.bias"]
    path = tmp_path / "renamed.pth"
    torch.save({"params_ema": state_dict}, path)

    with pytest.raises(WeightsMismatchError) as caught:
        load_into(StandIn(), load_state_dict_file(path), source=path)

    message = str(caught.value)
    assert str(path) in message
    assert "head.weight" in message and "encoder.1.bias" in message and "head.kernel" in message
    assert caught.value.missing == ["encoder.1.bias", "head.weight"]
    assert caught.value.unexpected == ["head.kernel"]


def test_a_shape_mismatch_is_listed_with_both_shapes():
    with pytest.raises(WeightsMismatchError, match=r"head.weight file \[2, 8\] network \[2, 4\]"):
        load_into(StandIn(), StandIn(width=8).state_dict())


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(Exception, match="notes.pth"):
        load_state_dict_file(path)


# --- synthetic weights: the parity fixture's rule, bit for bit -------------------------------------


def test_synthetic_fill_is_bit_identical_to_the_shared_rule():
    if not SHARED_FILL.is_file():
        shared_missing(f"{SHARED_FILL} is absent")
    spec = importlib.util.spec_from_file_location("shared_fill_weights", SHARED_FILL)
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    ours, theirs = WithMotionCodebook(), WithMotionCodebook()
    ours.half_buffer = torch.nn.Buffer(torch.zeros(3, 5, dtype=torch.float16))
    theirs.half_buffer = torch.nn.Buffer(torch.zeros(3, 5, dtype=torch.float16))

    fill_synthetic_(ours, seed=7)
    shared.fill_(theirs.state_dict(), seed=7)

    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert {t.ndim for t in ours_sd.values()} >= {0, 1, 2, 4}
    for name in ours_sd:
        assert torch.equal(ours_sd[name], theirs_sd[name]), name
    codebook = ours.motion_quantize.embedding.weight
    other_seed = fill_synthetic_(WithMotionCodebook(), 8).motion_quantize.embedding.weight
    assert (codebook[:, 1::2] > 0).all() and not torch.equal(codebook, other_seed)


# --- verify and the command line -------------------------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    from model.registry import build_model

    path = tmp_path / "tiny.pth"
    torch.save({"params_ema": fill_synthetic_(build_model("tiny"), 0).state_dict()}, path)
    return path


def test_weights_verify_accepts_a_fitting_file(tiny_checkpoint):
    result = CliRunner().invoke(main, ["weights", "verify", str(tiny_checkpoint), "--model", "tiny"])

    assert result.exit_code == 0, result.output
    assert sha256_of(tiny_checkpoint) in result.output
    report = verify_weights(tiny_checkpoint, model_name="tiny")
    assert f"{report.parameters:,} parameters in {report.tensors} tensors" in result.output
    assert result.output.rstrip().endswith("OK")


def test_weights_verify_refuses_another_network_listing_names(tmp_path):
    path = save_checkpoint(tmp_path / "standin.pth", seed=0)

    result = CliRunner().invoke(main, ["weights", "verify", str(path)])

    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "missing (748): position_emb, " in result.output and "... and 728 more" in result.output
    assert "unexpected (7): steps, encoder.0.weight, encoder.0.bias," in result.output


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory) -> Path:
    """The official network's state dict saved with torch.save (1.4 GB), written once per session."""
    from model.registry import build_model

    path = tmp_path_factory.mktemp("official") / WEIGHTS_FILENAME
    torch.save({"params_ema": build_model("official").state_dict()}, path)
    return path


@pytest.mark.slow
def test_weights_verify_accepts_the_official_networks_own_state_dict(official_checkpoint):
    result = CliRunner().invoke(main, ["weights", "verify", str(official_checkpoint)])

    assert result.exit_code == 0, result.output
    assert "374,242,900 parameters in 748 tensors fit the official network" in result.output
    assert result.output.rstrip().endswith("OK")


def test_weights_download_offline_exits_with_the_fix_and_no_traceback(cache):
    result = CliRunner().invoke(main, ["weights", "download"])

    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "dpt-batch weights download" in result.output and str(cache) in result.output


def test_weights_download_fetches_into_the_cache(hub, cache):
    result = CliRunner().invoke(main, ["weights", "download"])

    assert result.exit_code == 0, result.output
    assert (cache / WEIGHTS_FILENAME).read_bytes() == hub.payload
    assert f"{cache / WEIGHTS_FILENAME} (downloaded)" in result.output


def test_weights_download_to_a_url_publishes_a_copy_that_resolves_verified(cache):
    cache.mkdir()
    cached = save_checkpoint(cache / WEIGHTS_FILENAME, seed=9)
    folder = f"memory://published-{uuid.uuid4().hex}/weights/"

    result = CliRunner().invoke(main, ["weights", "download", "--to", folder])

    assert result.exit_code == 0, result.output
    url = folder + WEIGHTS_FILENAME
    assert f"{url} (already present)" in result.output
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(url + ".sha256").decode().split()[0] == sha256_of(cached)
    assert resolve_weights(url).identity == sha256_of(cached)


def test_weights_path_names_the_cache_file_or_the_fix(cache, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["weights", "path"])
    assert missing.exit_code == 1 and "dpt-batch weights download" in missing.output

    cache.mkdir()
    save_checkpoint(cache / WEIGHTS_FILENAME, seed=0)
    found = runner.invoke(main, ["weights", "path"])
    assert found.exit_code == 0 and found.output.strip() == str(cache / WEIGHTS_FILENAME)

    local = save_checkpoint(tmp_path / "mine.pth", seed=0)
    chosen = runner.invoke(main, ["weights", "path", "--set", f"model.weights={local}"])
    assert chosen.output.strip() == str(local.resolve())
    assert describe_resolution("synthetic:2").startswith("synthetic weights, seed 2")


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A moto S3 server on 127.0.0.1, with fsspec's s3:// pointed at it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = unused_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint, "skip_instance_cache": True})
    fsspec.filesystem("s3").mkdir("archive")
    yield endpoint
    server.stop()


def test_weights_published_to_s3_resolve_verified_from_s3(cache, s3_endpoint):
    cache.mkdir()
    cached = save_checkpoint(cache / WEIGHTS_FILENAME, seed=10)

    result = CliRunner().invoke(main, ["weights", "download", "--to", "s3://archive/weights/"])
    assert result.exit_code == 0, result.output

    resolved = resolve_weights(f"s3://archive/weights/{WEIGHTS_FILENAME}", cache_dir=cache / "worker")
    assert resolved.identity == sha256_of(cached)
    assert resolved.path.read_bytes() == cached.read_bytes()

    fsspec.filesystem("s3").pipe_file(f"archive/weights/{WEIGHTS_FILENAME}", b"tampered")
    with pytest.raises(WeightsIntegrityError):
        resolve_weights(f"s3://archive/weights/{WEIGHTS_FILENAME}", cache_dir=cache / "other-worker")
