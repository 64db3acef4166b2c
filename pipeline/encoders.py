"""The video encoders a run can write with, and the check that one works before any work starts.

libx264 and libx265 run on any CPU. h264_nvenc and hevc_nvenc are NVIDIA's hardware encoders: they need
a GPU that has one (L4, L40S, A10, RTX ...; the H100 and H200 have none) and its driver on every node
where encode actors run. Encode actors ask Ray for no GPU (NVENC is a separate engine from the one
restoration uses, and Ray leaves every GPU of a node visible to an actor that asks for none), so a run
checks each node that can hold encode actors with a short encode there and refuses to start, naming
the node and ffmpeg's reason, when one cannot.
"""

from __future__ import annotations

import subprocess

from pipeline.config import NVENC_CODECS, EncodeSettings


class EncoderError(RuntimeError):
    """The configured encoder cannot encode here."""


def encoder_args(encode: EncodeSettings) -> list[str]:
    """ffmpeg's output options for the video encoder: CRF and preset for x264/x265; for NVENC its
    constant-quality mode at the same level (-rc vbr -cq N, no bitrate cap) and its p1..p7 preset."""
    if encode.codec in NVENC_CODECS:
        return ["-c:v", encode.codec, "-preset", encode.preset, "-rc", "vbr", "-cq", str(encode.crf),
                "-b:v", "0"]  # fmt: skip
    return ["-c:v", encode.codec, "-crf", str(encode.crf), "-preset", encode.preset]


def check_encoder(encode: EncodeSettings) -> None:
    """Encode a few frames with these settings in this process's environment.

    Raises:
        EncoderError: ffmpeg could not open or run the encoder; the message is ffmpeg's first reason.
    """
    from pipeline.media import ffmpeg_exe

    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
               "-i", "testsrc2=s=256x256:r=25:d=0.2", *encoder_args(encode), "-pix_fmt", encode.pix_fmt,
               "-f", "null", "-"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [line.split("] ", 1)[-1] for line in result.stderr.strip().splitlines()]
        raise EncoderError(lines[0] if lines else f"ffmpeg exited with {result.returncode}")


def check_encoder_on_nodes(encode: EncodeSettings, gpus: int) -> None:
    """For an NVENC codec: check the encoder on every alive node that has CPUs (where encode actors can
    go), as a Ray task there. Nothing to check for the CPU encoders.

    Raises:
        pipeline.cluster.SetupError: the cluster has no GPU, or a node cannot encode (named, with why).
    """
    from pipeline.cluster import SetupError

    if encode.codec not in NVENC_CODECS:
        return
    fix = (
        "NVENC needs an NVIDIA GPU with a video encoder (L4, L40S, A10 ...; H100 and H200 have none) and "
        "its driver on every node with CPUs for encode actors; otherwise set encode.codec=libx264"
    )
    if gpus < 1:
        raise SetupError(f"encode.codec={encode.codec}, but the Ray cluster has no GPU. {fix}")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(_check_here)
    nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
    calls = {}
    for node in nodes:
        where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        name = f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})"
        calls[name] = probe.options(num_cpus=0, max_retries=0, scheduling_strategy=where).remote(encode)
    failed = {
        name: reason for name, reason in zip(calls, ray.get(list(calls.values())), strict=True) if reason
    }
    if failed:
        where = "; ".join(f"node {name}: {reason}" for name, reason in failed.items())
        raise SetupError(
            f"encode.codec={encode.codec} cannot encode on {len(failed)} of {len(nodes)} nodes ({where}). "
            + fix
        )


def _check_here(encode: EncodeSettings) -> str:
    """check_encoder as a task: "" when the encoder works on this node, else ffmpeg's reason."""
    try:
        check_encoder(encode)
    except (EncoderError, OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return ""
