"""The run as a Ray Data dataset: every stage mapped onto Ray the same way, from its declaration.

    videos -> ProbeVideo (tasks) -> DetectFaces -> RestoreFaces -> PasteAndEncode (actor pools)

A stage's resources and batch size come from the stage (pipeline.stages), its pool size from the
cluster plan in the run's context; records travel as flat rows and are read back strictly
(pipeline.records).
"""
from __future__ import annotations

import pandas as pd

from pipeline.context import RunContext
from pipeline.records import VideoTask
from pipeline.stages import STAGES, Stage


class StageActor:
    """A stage as Ray Data's callable class: built and set up once per actor, then a batch per call."""

    def __init__(self, stage_class: type[Stage], context: RunContext) -> None:
        as_worker(stage_class.resources(context).cpus)
        self.stage = stage_class(context)
        self.stage.setup()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return process_frame(self.stage, batch)


def run_stage_task(row: dict, stage_class: type[Stage], context: RunContext) -> list[dict]:
    """A stage without state as a Ray task, one record in and any number out: built for the row."""
    as_worker(stage_class.resources(context).cpus)
    stage = stage_class(context)
    return [record.to_row() for record in stage.process([stage.input_type.from_row(row)])]


def as_worker(cpus: float) -> None:
    """What a stage's actor or task sets in its process before it builds the stage: OpenCV's threads to
    the CPUs it asked for (use_cpus), malloc keeping the memory it frees (keep_freed_memory), and the
    clip-sized arrays reusing the memory of the last clip's (pipeline.scratch)."""
    from pipeline.scratch import keep_scratch

    use_cpus(cpus)
    keep_freed_memory()
    keep_scratch()


def use_cpus(cpus: float) -> None:
    """Keep OpenCV's thread pool to the CPUs this actor or task asked for (at least one thread).

    Ray sets OMP_NUM_THREADS to them, which torch follows, but OpenCV sizes its pool by the node's cores:
    in every actor of a large node its warps and resizes would run as many threads as the node has.
    Threads cost CPU time of their own: pasting a large face into a 1080p frame took 8-10 core-ms with
    two threads against 7 with one, on 2 cores."""
    import cv2

    cv2.setNumThreads(max(1, int(cpus)))


# glibc malloc: blocks up to this size come from the heap, freed ones are reused (glibc's largest on 64 bits)
MMAP_THRESHOLD = 32 << 20
# and up to this much free memory at the heap's top stays with the process
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees rather than hand it back to the kernel and fault it in
    again, zeroed, on its next allocation (once per process; True where it applied).

    glibc hands blocks of more than 128 KB straight back to the kernel when they are freed (raising that
    bound as such blocks come and go, up to 32 MB) and trims the free top of its heap beyond twice that
    bound. The faces stage allocates the detector's input and every layer's output anew for each batch
    of frames: on the 1080p cost film it faulted in 1119-1815 pages a frame by default (each mapped and
    zeroed by the kernel), 278-307 with these thresholds. What that saves depends on what a fault costs
    the machine: on a 2-core VM, 4.1 core-ms a frame as the median of 12 alternating pairs (less in 10),
    a tenth of the stage, but nothing visible in the two pairs run while the machine was 40% slower
    (one process per stage as in an actor, 2026-12-03; BENCHMARKS.md). Paste and encode already reused
    theirs (4-24 pages a frame either way). The largest resident size grew by at most 3%.

    Where the process's user set malloc's own knobs (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
    GLIBC_TUNABLES) or the C library is not glibc, nothing is changed."""
    global _kept
    if _kept is None:
        _kept = _set_malloc_thresholds()
    return _kept


def freed_memory_kept() -> bool:
    """Whether keep_freed_memory applied in this process."""
    return bool(_kept)


def _set_malloc_thresholds() -> bool:
    import ctypes
    import os

    user_set = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    if any(name in os.environ for name in user_set) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):  # no such name here (not glibc), or no libc.so.6
        return False
    mmap_set = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mmap_set and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def process_frame(stage: Stage, batch: pd.DataFrame) -> pd.DataFrame:
    tasks = [stage.input_type.from_row(row) for row in batch.to_dict("records")]
    return pd.DataFrame([record.to_row() for record in stage.process(tasks)])


def map_stage(dataset, stage_class: type[Stage], context: RunContext):
    """`dataset` mapped through a stage: an actor pool sized by the plan, or a Ray task per record,
    each asking for the stage's declared resources (and batches of its declared size)."""
    from ray.data import ActorPoolStrategy

    resources = stage_class.resources(context)
    asks = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, **stage_class.placement(context)}
    if resources.memory:
        asks["memory"] = resources.memory
    if not stage_class.uses_actors:
        # A row-wise task of its own, never fused into the next stage's actors: a worker that the next
        # stage kills must not take this stage's work (and its attempt count) down with it.
        return dataset.flat_map(run_stage_task, fn_kwargs={"stage_class": stage_class, "context": context},
                                **asks)  # fmt: skip
    low, high = context.plan.actors(stage_class.name)
    return dataset.map_batches(StageActor, fn_constructor_args=(stage_class, context),
                               batch_size=stage_class.batch_size(context), batch_format="pandas",
                               compute=ActorPoolStrategy(min_size=low, max_size=high), **asks)  # fmt: skip


def build_dataset(videos: list[VideoTask], context: RunContext):
    """The run as a Ray Data dataset of finished clip rows (lazy until iterated)."""
    import ray
    from ray.data import DataContext

    data_context = DataContext.get_current()
    # Rows are small records; a block per row lets each clip stream through the stages on its own and
    # spread over a pool's actors (otherwise a video's clips travel as one block, stage by stage).
    data_context.target_max_block_size = 1
    # One clip of the official network on a CPU can take longer than Ray's default 30 minutes without
    # output; dead workers are still detected by Ray itself.
    data_context.execution_no_progress_timeout_s = -1
    # Ray restarts dead actors and retries their tasks without limit; the stages themselves fail a clip
    # that killed its worker MAX_ATTEMPTS times (pipeline.stages.count_attempt). A block that errors
    # anyway is dropped rather than fatal, and the driver fails its video with the clips it lost.
    data_context.max_errored_blocks = -1
    dataset = ray.data.from_items([video.to_row() for video in videos])
    for stage_class in STAGES:
        dataset = map_stage(dataset, stage_class, context)
    return dataset
