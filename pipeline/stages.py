"""The stages of a restoration run, one class each, in the order a video travels through them.

    ProbeVideo       a video -> its scene clips (probe, scene split; clips an earlier run finished),
                     or the rows of its earlier result when that stands
    DetectFaces      a clip -> its face tracks and aligned crops                       (CPU actors)
    RestoreFaces     clips -> their restored crops, windows batched across clips       (GPU actors)
    PasteAndEncode   a clip -> its encoded segment, recorded as finished               (CPU actors)

Each stage declares the resources and batch size it needs, loads its models once in `setup()`
(through the run's `Restorer`), and maps a batch of records (pipeline.records) to a batch of records
in `process()`. What every stage shares is done once, in the base class: failed clips and clips an
earlier run finished pass on untouched; each attempt is counted, so that a clip that killed its worker
MAX_ATTEMPTS times fails instead of being retried forever; an error becomes the clip's `error`
(never the run's); a batch that fails is retried clip by clip, so that one bad clip fails alone; the
stage's seconds are added; and finished clips are recorded (pipeline.state) for resuming.

Stages know nothing of Ray: `pipeline.execute` maps each onto an actor pool from its declaration,
and tests call them directly. Nothing a stage leaves for another is on a shared disk
(pipeline.artifacts): crops ride in the clip's record through Ray's object store, each node decodes
frames from its own copy of the source, and a finished clip's segment is published to the output's
storage before the clip is recorded.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.artifacts import SEGMENT, clip_artifact, local_source, pack_faces, unpack_faces
from pipeline.context import RunContext
from pipeline.faces.pictures import pack_picture_frames
from pipeline.faces.stability import pack_flows, unpack_flows
from pipeline.faults import fault_point
from pipeline.records import ClipTask, Record, VideoTask
from pipeline.restorer import Restorer, encode_settings_for

# A clip (or video, for probing) whose worker died this many times in one run fails instead of being
# tried again: Ray restarts dead actors and retries their work without limit, which a file that
# crashes a decoder or the GPU every time would turn into an endless run.
MAX_ATTEMPTS = 3


class WorkerDiedError(RuntimeError):
    """The item killed its worker process MAX_ATTEMPTS times."""


def count_attempt(work_dir: str | Path, item: str, stage: str, run_id: str) -> int:
    """Count one more attempt of `stage` at `item` (a clip, or "video") in run `run_id`, and return
    the count; raise WorkerDiedError past MAX_ATTEMPTS. Outside a run (no run_id) nothing is counted.

    The count lives in the node's scratch folder, so it survives the worker: an attempt that ends
    normally (success or a caught error) still counts, but Ray only retries work whose worker died.
    Work that Ray moves to another node is counted there afresh (at most MAX_ATTEMPTS per node)."""
    if not run_id:
        return 0
    marker = Path(work_dir) / f".attempts-{run_id}-{stage}-{item}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    count = int(marker.read_text() or 0) + 1 if marker.is_file() else 1
    marker.write_text(str(count))
    if count > MAX_ATTEMPTS:
        raise WorkerDiedError(f"its worker died {count - 1} times on it (a crash in a decoder or device?)")
    return count


def current_node() -> str:
    """The first 8 hex digits of the Ray node this process runs on; "local" outside Ray."""
    return current_node_id()[:8] or "local"


def node_cpus(node_id: str) -> int:
    """The CPUs Ray counts on a node (at least one), no more than this process may run on."""
    import ray

    usable = len(os.sched_getaffinity(0))
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("Alive", True):
            return max(1, min(usable, int(node.get("Resources", {}).get("CPU", 1))))
    return 1


def current_node_id() -> str:
    """The Ray node this process runs on; "" outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - naming the node must never fail a stage
        pass
    return ""


@dataclass(frozen=True)
class Resources:
    """What one actor (or task) of a stage asks the cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: float = 0.0  # bytes asked of Ray's memory resource (cluster.actor_memory_gb; 0: none)


class Stage:
    """Base of the stages: `setup()` once per actor, then `process(tasks)` per batch.

    A stage implements `run(tasks)` (the default calls `run_one` per task); each output is one
    record, or a list of them (a video's clips).
    """

    name = "stage"
    input_type: type[Record] = ClipTask
    uses_actors = True  # an actor pool that keeps its models loaded; False: stateless Ray tasks
    records_finished = False  # whether a clip is finished once this stage is done with it

    @classmethod
    def resources(cls, context: RunContext) -> Resources:
        """One CPU per actor (or task), or the share of one that the cluster plan gives; an actor asks
        for the plan's memory too (cluster.actor_memory_gb), a task (a video's probe) does not."""
        memory = context.plan.actor_memory if cls.uses_actors else 0.0
        return Resources(cpus=context.plan.cpus_per_actor, memory=memory)

    @classmethod
    def batch_size(cls, context: RunContext) -> int:
        return 1

    @classmethod
    def placement(cls, context: RunContext) -> dict:
        """Ray options that say where the stage's actors go (none: anywhere they fit)."""
        return {}

    def __init__(self, context: RunContext, restorer: Restorer | None = None) -> None:
        self.context = context
        self.restorer = restorer or Restorer.for_run(context)
        self.node = current_node()

    def setup(self) -> None:
        """Load models; runs once per actor, before the first batch."""

    def wants(self, task) -> bool:
        """Whether this stage has work to do on `task` (otherwise it passes on untouched)."""
        return not task.passes_through

    def run(self, tasks: list) -> list:
        return [self.run_one(task) for task in tasks]

    def run_one(self, task):
        raise NotImplementedError

    def process(self, tasks: list) -> list[ClipTask]:
        """The stage over a batch: one or more clip records out for each record in, errors included."""
        outputs: list[list[ClipTask]] = [[task] for task in tasks]
        todo, retried = [], False
        for i, task in enumerate(tasks):
            if not self.wants(task):
                continue
            try:
                attempt = count_attempt(self.work_dir(task), self.item(task), self.name, self.context.run_id)
            except WorkerDiedError as error:
                outputs[i] = [self.failed(task, error)]
                continue
            retried |= attempt > 1
            todo.append(i)
        # after a worker died on a batch, its clips go one at a time, so that one clip fails alone
        groups = [todo] if len(todo) > 1 and not retried else [[i] for i in todo]
        while groups:
            group = groups.pop(0)
            start = time.perf_counter()
            try:
                results = self.run([tasks[i] for i in group])
                for result in results:
                    self.finish(result)
            except Exception as error:  # a bad item is recorded, never fatal to the run
                if len(group) > 1:
                    groups = [[i] for i in group] + groups
                    continue
                results = [self.failed(tasks[group[0]], error, traceback.format_exc(limit=8))]
            share = (time.perf_counter() - start) / len(group)
            for i, result in zip(group, results, strict=True):
                made = result if isinstance(result, list) else [result]
                outputs[i] = [self.timed(record, share / len(made)) for record in made]
        return [record for made in outputs for record in made]

    def finish(self, result) -> None:
        """Record the clips this stage finished (for resuming), once their files are in place."""
        if not self.records_finished or not self.context.output:
            return
        from pipeline.state import RunState

        for clip in result if isinstance(result, list) else [result]:
            if clip.clip_key and not clip.passes_through:
                RunState(self.context.output).record_clip(clip)

    def failed(self, task, error: BaseException, trace: str = "") -> ClipTask:
        if isinstance(task, VideoTask):
            task = ClipTask(task.video_id, task.uri, task.uri, str(self.work_dir(task)),
                            weights=self.context.weights.identity)  # fmt: skip
        return task.failed(self.name, error, trace)

    def timed(self, record: ClipTask, seconds: float) -> ClipTask:
        """The record with this stage's seconds added, and this node named in its `nodes`."""
        field = f"seconds_{self.name}"
        nodes = f"{record.nodes} {self.name}:{self.node}".strip()
        return replace(record, nodes=nodes, **{field: getattr(record, field) + seconds})

    def work_dir(self, task) -> Path:
        """The video's scratch folder on this node."""
        return self.context.work_dir(task.video_id)

    def source(self, task: ClipTask | VideoTask) -> Path:
        """This node's file of the video's source (a URL is copied once per node)."""
        return local_source(task.uri, task.fingerprint, self.work_dir(task))

    def item(self, task) -> str:
        """What attempts are counted for: the clip, or the video before it has clips."""
        is_clip = isinstance(task, ClipTask) and task.clip_index >= 0
        return clip_artifact(task, "").name if is_clip else "video"


# ---------------------------------------------------------------------------------------------------
# 1. probe and scenes: a video -> its clips


class ProbeVideo(Stage):
    """Probe a video and cut it into scene clips: one record per clip (or one failed record).

    In a run (a context with an output), a video is first identified: its source's fingerprint and its
    result's key are worked out here, one video at a time, so that the driver's cost does not grow with
    the archive. When an earlier run's record of the video stands (pipeline.state.reusable), the video
    is not probed: one record marked `kept` carries that record's catalog rows to the driver.

    A remote source (an fsspec URL) is copied once into the node's scratch folder (each node that works
    on the video makes its own copy). Every frame lands in exactly one clip. A video with a `video_key`
    (a run's) gives each clip its key, and clips that an earlier run finished under the same key come
    back as recorded, marked `resumed`.
    """

    name = "probe"
    input_type = VideoTask
    uses_actors = False

    def process(self, tasks: list[VideoTask]) -> list[ClipTask]:
        videos = [self.identified(video) for video in tasks]
        kept = [self.kept(video) for video in videos]
        todo = [video for video, earlier in zip(videos, kept, strict=True) if earlier is None]
        keys = {video.video_id: video.video_key for video in todo}
        clips = [replace(clip, video_key=keys[clip.video_id]) for clip in super().process(todo)]
        return [earlier for earlier in kept if earlier is not None] + clips

    def identified(self, video: VideoTask) -> VideoTask:
        """The video with its source's fingerprint and its result's key (in a run; as it is outside one)."""
        if video.video_key or not self.context.output:
            return video
        from pipeline.state import source_fingerprint, video_key

        fingerprint = source_fingerprint(video.uri)
        key = video_key(self.context.settings_key, asdict(self.context.settings.scenes), fingerprint)
        return replace(video, fingerprint=fingerprint, video_key=key)

    def kept(self, video: VideoTask) -> ClipTask | None:
        """The video's earlier result as one record for the driver, when it stands; else None (also when
        the record cannot be read or checked: the video is then done again)."""
        if not video.video_key:
            return None
        from pipeline.state import RunState, reusable

        try:
            record = RunState(self.context.output).video_record(video.video_id)
            if record is None or not reusable(record, video.video_key, self.context.retry_failed):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        rows = json.dumps({name: record[name] for name in ("video", "clips", "tracks")}, default=str)
        return ClipTask(video.video_id, video.uri, "", str(self.work_dir(video)), video_key=video.video_key,
                        weights=self.context.weights.identity, kept=rows)  # fmt: skip

    def run_one(self, video: VideoTask) -> list[ClipTask]:
        from pipeline.state import RunState, clip_key

        work_dir = self.work_dir(video)
        source = str(self.source(video))
        info, clips = self.restorer.scan(source)
        base = ClipTask(
            video.video_id, video.uri, source, str(work_dir), video.fingerprint, clip_count=len(clips),
            frames_in=info.frame_count, fps_num=info.frame_rate.numerator,
            fps_den=info.frame_rate.denominator,
            width=info.width, height=info.height, duration_s=info.duration_s, bit_depth=info.bit_depth,
            has_audio=info.has_audio, weights=self.context.weights.identity,
        )  # fmt: skip
        tasks = [replace(base, clip_index=clip.index, start=clip.start, end=clip.end, scene=clip.scene)
                 for clip in clips]  # fmt: skip
        if not video.video_key:
            return tasks
        key = self.context.settings_key
        tasks = [replace(task, clip_key=clip_key(key, video.fingerprint, task.start, task.end))
                 for task in tasks]  # fmt: skip
        finished = RunState(self.context.output).finished_clips(video.video_id) if self.context.output else {}
        # a finished clip comes back as recorded, with this run's copy of the source
        return [replace(finished[task.clip_key], source=source, fingerprint=video.fingerprint, resumed=True)
                if task.clip_key in finished else task for task in tasks]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# 2. faces: detect, track, smooth, align -> aligned crops


class DetectFaces(Stage):
    """Decode a clip, find and track its faces, and pass on the aligned crops of the tracks to restore."""

    name = "faces"

    def setup(self) -> None:
        if not self.restorer.aligned_mode:
            self.restorer.detector  # noqa: B018 (loads the detector)

    def run_one(self, task: ClipTask) -> ClipTask:
        """One decode of the clip gives the full-size pictures (for the crops) and, shrunk from the same
        decoded pictures, the frames the detector reads (faces.detect_max_side). Pictures of even sizes
        stay I420 as decoded and crops are cut from their planes; odd sizes are converted to RGB."""
        from pipeline.media import read_frames, read_frames_with_preview, read_pictures_with_preview

        source, colour = self.source(task), None
        max_side = self.context.settings.faces.detect_max_side
        if self.restorer.aligned_mode:
            frames, shrunk, scale = read_frames(source, task.start, task.end), None, 1.0
        elif task.width % 2 == 0 and task.height % 2 == 0:
            frames, colour, shrunk, scale = read_pictures_with_preview(source, task.start, task.end, max_side)
        else:
            frames, shrunk, scale = read_frames_with_preview(source, task.start, task.end, max_side)
        clip = str(task.clip_index)
        faces = self.restorer.find_faces(frames, task.start, clip, shrunk=shrunk, scale=scale, colour=colour)
        fault_point("faces", task.video_id)
        summaries, flows = self.measured(faces)
        return replace(task, tracks_json=json.dumps(summaries), tracks=len(summaries),
                       faces=faces.face_frames, face_crops=pack_faces(faces.aligned),
                       face_flows=pack_flows(flows))  # fmt: skip

    @staticmethod
    def measured(faces) -> tuple[list[dict], dict]:
        """The track summaries with the before-metrics of each track to restore
        (pipeline.faces.stability), and track id -> its input flows, which the restore stage reuses."""
        from pipeline.faces.stability import measure_input

        tracks = {track.track_id: track for track in faces.tracks}
        summaries, flows = {summary["track_id"]: dict(summary) for summary in faces.summaries}, {}
        for track_id, aligned in faces.aligned.items():
            track = tracks.get(track_id)  # none in aligned mode: no landmarks
            landmarks = None if track is None else track.smoothed_landmarks
            metrics, flows[track_id] = measure_input(aligned.crops, landmarks, aligned.affines)
            summaries[track_id].update(metrics)
        return list(summaries.values()), flows


# ---------------------------------------------------------------------------------------------------
# 3. restoration: DP-TempCoh over the aligned crops of several clips at once


def restore_cpu_threads(setting: int) -> int | None:
    """A restoration actor's torch threads on CPUs: `setting` (cluster.restore_cpu_threads), or for 0
    every CPU that Ray counts on the actor's node. Ray gives an actor of one CPU (or a share of one)
    one thread, but the other stages wait on restoration there: on 2 cores the smoke run of the demo
    archive ends 16-35% sooner with two threads, for about the same CPU time (BENCHMARKS.md).

    None outside a Ray actor: a process that runs the stage itself (a benchmark measuring each stage
    on one thread, a test) keeps its own torch threads."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return None
    return setting or node_cpus(current_node_id())


class RestoreFaces(Stage):
    """Restore the aligned crops of a batch of clips with DP-TempCoh (windows batched across tracks).

    Clips without faces to restore pass on without touching the network.
    """

    name = "restore"

    @classmethod
    def resources(cls, context: RunContext) -> Resources:
        """A GPU per actor, or the share of it that a detector beside it leaves (pipeline.faces.remote)."""
        if context.restore_device == "cuda":
            from pipeline.faces.remote import RESTORE_GPU_SHARE

            return Resources(cpus=0, gpus=RESTORE_GPU_SHARE if context.detectors is not None else 1)
        return super().resources(context)

    @classmethod
    def placement(cls, context: RunContext) -> dict:
        """Beside the detectors, in the bundles of their GPUs."""
        if context.restore_device == "cuda" and context.detectors is not None:
            return {"scheduling_strategy": context.detectors.scheduling_strategy()}
        return {}

    @classmethod
    def batch_size(cls, context: RunContext) -> int:
        return max(1, context.settings.model.batch_windows)

    def setup(self) -> None:
        if self.context.restore_device == "cpu" and (
            threads := restore_cpu_threads(self.context.settings.cluster.restore_cpu_threads)
        ):
            import torch

            torch.set_num_threads(threads)
        self.restorer.engine  # noqa: B018 (loads the network)

    def wants(self, task: ClipTask) -> bool:
        return not task.passes_through and bool(task.face_crops)

    def run(self, tasks: list[ClipTask]) -> list[ClipTask]:
        loaded = [unpack_faces(task.face_crops) for task in tasks]
        faces = {(i, track): face for i, clip in enumerate(loaded) for track, face in clip.items()}
        restored = self.restorer.restore_faces(faces)
        fault_point("restore", tasks[0].video_id)
        outputs = []
        for i, task in enumerate(tasks):
            mine = {track: face for (j, track), face in restored.items() if j == i}
            summaries, pictures = self.assessed(task, loaded[i], mine)
            outputs.append(replace(task, face_crops=b"", face_flows=b"", restored_crops=pack_faces(mine),
                                   tracks_json=json.dumps(summaries),
                                   picture_frames=pack_picture_frames(pictures)))  # fmt: skip
        return outputs

    def assessed(self, task: ClipTask, inputs: dict, restored: dict) -> tuple[list[dict], dict]:
        """The clip's track summaries with the after-metrics of each restored track (PSNR, warping
        error through the input's flows, worst frame and stretch: pipeline.faces.stability), and, in a
        run, track id -> the shrunk frames of its pictures (pipeline.faces.pictures), which the encode
        stage writes.

        Done here, where input and restored crops are both at hand, and kept cheap because this actor
        holds the GPU: the metrics and the frames' shrinking cost about 0.6 core-ms per face-frame
        (BENCHMARKS.md, issue 13); compressing and writing the pictures is the encode stage's (CPU)."""
        from pipeline.faces.pictures import picture_frames
        from pipeline.faces.stability import STRETCH, measure_input, measure_restored

        flows = unpack_flows(task.face_flows)
        summaries, pictures = task.track_summaries(), {}
        for summary in summaries:
            track = summary["track_id"]
            if track not in restored:
                continue
            if track not in flows:  # a record made without the faces stage's flows
                before, flows[track] = measure_input(inputs[track].crops)
                summary.update({key: value for key, value in before.items() if summary.get(key) is None})
            summary.update(measure_restored(flows[track], inputs[track].crops, restored[track].crops,
                                            summary["first_frame"]))  # fmt: skip
            stretch = summary["worst_stretch_start"]
            if self.context.output and stretch is not None:
                pictures[track] = picture_frames(inputs[track].crops, restored[track].crops,
                                                 summary["first_frame"], stretch, STRETCH)  # fmt: skip
        return summaries, pictures


# ---------------------------------------------------------------------------------------------------
# 4. paste-back and encode: one .mp4 segment per clip


class PasteAndEncode(Stage):
    """Paste the restored faces back into the clip's frames and encode the clip as one segment, which
    is published to the output's storage (during a run); the clip is then finished and recorded."""

    name = "encode"
    records_finished = True
    decode_batch = 32
    i420_outputs = ("yuv420p", "yuv420p10le")  # 4:2:0 output: decoded pictures kept, faces pasted in YUV

    def setup(self) -> None:
        self.restorer.parser  # noqa: B018 (loads the face parser, when one is set)

    def run_one(self, task: ClipTask) -> ClipTask:
        from pipeline.media import I420Converter, VideoWriter, iter_frames
        from pipeline.state import RunState
        from pipeline.storage import fsync_file, publish_file

        task = self.with_pictures(task)
        faces_by_frame = self.restorer.faces_by_frame(unpack_faces(task.restored_crops))
        source = self.source(task)
        segment = clip_artifact(task, SEGMENT)
        partial = segment.with_name(f".{segment.name}.partial.mp4")
        encode = encode_settings_for(task.width, task.height, task.bit_depth, self.context.settings.encode)
        in_yuv = encode.pix_fmt in self.i420_outputs and not self.restorer.aligned_mode  # no RGB round trip
        decoded = I420Converter() if in_yuv else None
        with ExitStack() as stack:
            writer = None
            for first, frames in iter_frames(source, task.start, task.end, batch=self.decode_batch,
                                             convert=decoded):  # fmt: skip
                for offset in range(len(frames)):
                    faces = faces_by_frame.get(first - task.start + offset)
                    if faces:
                        frames[offset] = self.restorer.paste(frames[offset], faces, decoded)
                if writer is None:  # the decoded colour is known from the first frame on
                    colour = decoded.colour if decoded else None
                    writer = stack.enter_context(VideoWriter(
                        partial, task.width, task.height, task.frame_rate, encode,
                        input_format=colour.pix_fmt if colour else "rgb24", colour=colour))  # fmt: skip
                writer.write(frames)
                fault_point("encode", task.video_id)
        frames_written = writer.frames_written if writer else 0
        if frames_written != task.frame_count:
            raise RuntimeError(
                f"{source}: decoded {frames_written} frames of the clip's {task.frame_count} "
                f"({task.start}..{task.end}); is the file truncated?"
            )
        fsync_file(partial)  # the segment's bytes are on disk before its name and record say it is done
        os.replace(partial, segment)
        if self.context.output and task.clip_key:  # a run's: where any node can assemble the film
            location = RunState(self.context.output).segment_location(task.video_id, task.clip_key)
            segment = publish_file(segment, location)
        return replace(task, segment=str(segment), frames_out=frames_written, restored_crops=b"")

    def with_pictures(self, task: ClipTask) -> ClipTask:
        """Write the contact sheet and flipbook of each restored track under OUT/report/pictures/ (from
        the frames the restore stage picked), and name them in the track summaries (`sheet`, `flipbook`,
        relative to OUT)."""
        if not task.picture_frames or not self.context.output:
            return replace(task, picture_frames=b"")
        from pipeline.faces.pictures import publish_pictures, unpack_picture_frames

        written = publish_pictures(self.context.output, task.video_id, task.clip_index, task.frame_rate,
                                   unpack_picture_frames(task.picture_frames))  # fmt: skip
        summaries = [{**summary, **written.get(summary["track_id"], {})}
                     for summary in task.track_summaries()]  # fmt: skip
        return replace(task, tracks_json=json.dumps(summaries), picture_frames=b"")


STAGES: tuple[type[Stage], ...] = (ProbeVideo, DetectFaces, RestoreFaces, PasteAndEncode)
"""The journey of a video, in order."""
