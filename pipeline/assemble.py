"""Assembling a video from its finished clips: join, mux, check, publish, and its catalog rows.

During a run this is a Ray task on a worker (`assemble_task`, on the node that encoded the video's
last clip when it is alive): it fetches the clips' segments from the output's storage and the source
from its URI into that node's scratch folder, so that no bytes of a film pass through the driver and
any node can assemble a video whose clips other nodes made.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.records import ClipTask, VideoTask, describe_error

Row = dict[str, Any]


@dataclass
class VideoResult:
    """One input video's outcome: its catalog row, clip rows and track rows."""

    video: Row
    clips: list[Row] = field(default_factory=list)
    tracks: list[Row] = field(default_factory=list)


def assemble_video(
    source: VideoTask, clips: list[ClipTask], videos_dir: str | Path, error: str = "",
    scratch: str | Path | None = None,
) -> VideoResult:
    """Join a video's encoded clips with the source's audio/subtitles, check the frame count, and
    publish the film as `videos_dir`/VIDEO_ID.mp4 (a local folder or URL; it appears whole or not at
    all). `error` fails the video whatever its clips say (e.g. clips lost to dying workers).

    Segments and the source behind URLs are fetched into `scratch` (default: the clips' work folder),
    on whichever node this runs; what was fetched and joined there is removed afterwards."""  # fmt: skip
    from pipeline.artifacts import local_source
    from pipeline.faults import fault_point
    from pipeline.media import concat_clips, probe
    from pipeline.storage import join, local_copy, publish_file

    clips = sorted(clips, key=lambda clip: clip.clip_index)
    first = clips[0]
    fps = first.frame_rate
    errors = [error] if error else []
    errors += [clip.error for clip in clips if clip.error]
    video = {
        "video_id": source.video_id,
        "uri": source.uri,
        "status": "failed" if errors else "done",
        "output_uri": "",
        "frames_in": first.frames_in,
        "frames_out": 0,
        "fps": float(fps),
        "fps_rational": f"{fps.numerator}/{fps.denominator}",
        "duration_s": first.duration_s,
        "width": first.width,
        "height": first.height,
        "clips": len([clip for clip in clips if clip.clip_index >= 0]),
        "tracks": sum(clip.tracks for clip in clips),
        "faces_restored": sum(clip.faces for clip in clips if not clip.error),
        "seconds_probe": sum(clip.seconds_probe for clip in clips),
        "seconds_faces": sum(clip.seconds_faces for clip in clips),
        "seconds_restore": sum(clip.seconds_restore for clip in clips),
        "seconds_encode": sum(clip.seconds_encode for clip in clips),
        "error": errors[0] if errors else "",
        "weights": next((clip.weights for clip in clips if clip.weights), ""),
    }
    start = time.perf_counter()
    if not errors:
        scratch = Path(scratch or first.work_dir)
        fetched = scratch / "segments"
        joined = scratch / f"joined_{source.video_id}.mp4"
        try:
            segments = [local_copy(clip.segment, fetched) for clip in clips]
            streams = local_source(source.uri, first.fingerprint or source.fingerprint, scratch)
            concat_clips(segments, joined, streams_from=streams)
            frames_out = probe(joined).frame_count
            if frames_out != video["frames_in"]:
                raise RuntimeError(f"the output has {frames_out} frames, the source {video['frames_in']}")
            fault_point("assemble", source.video_id)
            output = publish_file(joined, join(videos_dir, f"{source.video_id}.mp4"))
            video.update(output_uri=output, frames_out=frames_out)
        except Exception as failure:
            video.update(status="failed", error=f"assemble: {describe_error(failure)}")
        finally:
            joined.unlink(missing_ok=True)
            shutil.rmtree(fetched, ignore_errors=True)
    video["seconds_encode"] += time.perf_counter() - start
    clip_rows = [clip_catalog_row(clip) for clip in clips if clip.clip_index >= 0]
    track_rows = [
        {"video_id": clip.video_id, "clip_index": clip.clip_index, **track}
        for clip in clips
        for track in clip.track_summaries()
    ]
    return VideoResult(video, clip_rows, track_rows)


def assemble_task():
    """`assemble_video` as a Ray task, retried by Ray on another node if its node dies.

    Joining copies streams and moves files (no frame is decoded), so the task asks for no CPU: it
    never waits behind the stage pools for a CPU they hold (`where` says which node runs it)."""
    import ray

    return ray.remote(num_cpus=0, max_retries=3)(assemble_video)


def where(clips: list[ClipTask]):
    """The scheduling strategy of a video's assembly: the node that encoded its last clip (a worker,
    which has just written segments), else any node but spread over them (soft: another node when
    that one is gone)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    encoders = [entry.split(":", 1)[1] for clip in clips for entry in clip.nodes.split()
                if entry.startswith("encode:")]  # fmt: skip
    node = _node_id(encoders[-1]) if encoders else ""
    return NodeAffinitySchedulingStrategy(node_id=node, soft=True) if node else "SPREAD"


_NODE_IDS: dict[str, str] = {}  # first 8 hex digits -> Ray node id ("": none such when last asked)


def _node_id(short: str) -> str:
    """The Ray node id that starts with `short`, from the cluster's node table, read again only for a
    prefix not seen yet (not once per video); a node gone since is left to the soft affinity."""
    if short not in _NODE_IDS:
        import ray

        _NODE_IDS.update({node["NodeID"][:8]: node["NodeID"] for node in ray.nodes() if node["Alive"]})
        _NODE_IDS.setdefault(short, "")
    return _NODE_IDS[short]


def clip_catalog_row(clip: ClipTask) -> Row:
    return {
        "video_id": clip.video_id,
        "clip_index": clip.clip_index,
        "start": clip.start,
        "end": clip.end,
        "frames": clip.frame_count,
        "scene": clip.scene,
        "tracks": clip.tracks,
        "faces_restored": clip.faces if not clip.error else 0,
        "status": "failed" if clip.error else "done",
        "error": clip.error,
        "artifact": clip.segment,
        "nodes": clip.nodes,
    }
