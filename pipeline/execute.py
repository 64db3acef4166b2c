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
        use_cpus(stage_class.resources(context).cpus)
        self.stage = stage_class(context)
        self.stage.setup()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return process_frame(self.stage, batch)


def run_stage_task(row: dict, stage_class: type[Stage], context: RunContext) -> list[dict]:
    """A stage without state as a Ray task, one record in and any number out: built for the row."""
    use_cpus(stage_class.resources(context).cpus)
    stage = stage_class(context)
    return [record.to_row() for record in stage.process([stage.input_type.from_row(row)])]


def use_cpus(cpus: float) -> None:
    """Keep OpenCV's thread pool to the CPUs this actor or task asked for (at least one thread).

    Ray sets OMP_NUM_THREADS to them, which torch follows, but OpenCV sizes its pool by the node's cores:
    in every actor of a large node its warps and resizes would run as many threads as the node has.
    Threads cost CPU time of their own: pasting a large face into a 1080p frame took 8-10 core-ms with
    two threads against 7 with one, on 2 cores."""
    import cv2

    cv2.setNumThreads(max(1, int(cpus)))


def process_frame(stage: Stage, batch: pd.DataFrame) -> pd.DataFrame:
    tasks = [stage.input_type.from_row(row) for row in batch.to_dict("records")]
    return pd.DataFrame([record.to_row() for record in stage.process(tasks)])


def map_stage(dataset, stage_class: type[Stage], context: RunContext):
    """`dataset` mapped through a stage: an actor pool sized by the plan, or a Ray task per record,
    each asking for the stage's declared resources (and batches of its declared size)."""
    from ray.data import ActorPoolStrategy

    resources = stage_class.resources(context)
    asks = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, **stage_class.placement(context)}
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
