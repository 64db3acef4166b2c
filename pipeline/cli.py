"""dpt-batch command line: a thin layer over functions a Python user can call too."""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dpt-batch")
def main() -> None:
    """Restore faces in video archives with DP-TempCoh."""


@main.group()
def model() -> None:
    """The DP-TempCoh network: parity checks against upstream."""


@model.command("parity")
@click.option(
    "--fixture",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Parity fixture folder (meta.json, input_bgr.npy, tokens.npy, motion_tokens.npy, output_bgr.npy).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def model_parity(fixture: Path, device: str) -> None:
    """Run the official network with the fixture's synthetic weights and compare with upstream.

    Prints one JSON line; exits 1 below token agreement 0.995, motion-token agreement 0.99 or 40 dB.
    """
    from model.parity import run_parity

    click.echo("running the official network on the fixture (1-2 minutes on a CPU) ...", err=True)
    try:
        report = run_parity(fixture, device=device)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(report.to_json())
    if not report.passed:
        sys.exit(1)


def settings_options(command):
    """--config FILE and --set KEY=VALUE, shared by every command that reads settings."""
    command = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override one setting, e.g. --set faces.detect_every=2 (repeatable; value parsed as YAML).",
    )(command)
    return click.option(
        "--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="YAML settings file (configs/default.yaml when omitted; configs/smoke.yaml for a quick run).",
    )(command)


def load_cli_settings(config: Path | None, overrides: tuple[str, ...]):
    """Settings from --config/--set, validated; a bad setting becomes a usage error naming it."""
    from pipeline.config import ConfigError, check_local_files, load_settings

    try:
        settings = load_settings(config, overrides)
        check_local_files(settings)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    return settings


@main.command("faces")
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder for tracks.parquet and preview.mp4 (created if missing).",
)
@settings_options
@click.option("--no-preview", is_flag=True, help="Write tracks.parquet only, no preview.mp4.")
def faces(
    video: Path, out_dir: Path, config: Path | None, overrides: tuple[str, ...], no_preview: bool
) -> None:
    """Find, track and preview the faces of one VIDEO (scene split + detection + tracking).

    Writes OUT/tracks.parquet (one row per track and frame: clip, track_id, frame, box, score,
    raw and smoothed landmarks) and OUT/preview.mp4 with boxes and track ids drawn.
    """
    from pipeline.config import ConfigError
    from pipeline.faces import DetectorWeightsError
    from pipeline.faces_report import write_faces_report
    from pipeline.media import MediaError, probe

    settings = load_cli_settings(config, overrides)
    try:
        info = probe(video)
        with _StageBars(info.frame_count) as bars:
            report = write_faces_report(
                video, out_dir, settings, preview=not no_preview, info=info, progress=bars.advance
            )
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    except (MediaError, DetectorWeightsError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{video}: {len(report.clips)} clips, {report.tracks} face tracks "
        f"({report.restorable_tracks} to restore) -> {report.tracks_path}"
        + (f", {report.preview_path}" if report.preview_path else ""),
        err=True,
    )


class _StageBars:
    """One click progress bar per stage ("scenes", "faces"), on stderr, each `total` frames long."""

    LABELS = {"scenes": "finding cuts   ", "faces": "tracking faces "}

    def __init__(self, total: int) -> None:
        self.total = total
        self.stage: str | None = None
        self.bar = None

    def advance(self, stage: str, frames: int) -> None:
        if stage != self.stage:
            self._close()
            self.stage = stage
            label = self.LABELS.get(stage, stage)
            self.bar = click.progressbar(length=self.total, label=label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self.bar.update(frames)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> _StageBars:
        return self

    def __exit__(self, *exc_info) -> None:
        self._close()


@main.group()
def weights() -> None:
    """The network's weights: download, verify, and where a run takes them from."""


@weights.command("download")
@click.option(
    "--to", "destination", default=None, metavar="DIR_OR_URL",
    help="Put net_g_v1.pth (and a .sha256 sidecar) in this folder or fsspec URL (s3://bucket/weights/) "
    "instead of the cache ($DPT_CACHE_DIR, default ~/.cache/dpt-batch).",
)
def weights_download(destination: str | None) -> None:
    """Download the official checkpoint net_g_v1.pth from the Hugging Face hub (xcc98/DP-TempCoh)."""
    from model.weights import WeightsError, download_official, publish_weights

    local_folder = destination is not None and "://" not in destination
    try:
        resolved = download_official(cache_dir=destination if local_folder else None)
        target = str(resolved.path)
        if destination is not None and not local_folder:
            target = publish_weights(resolved.path, destination)
    except WeightsError as error:
        raise click.ClickException(str(error)) from None
    state = "already present" if resolved.source == "cache" else "downloaded"
    click.echo(f"{target} ({state})\nsha256 {resolved.identity}")


@weights.command("verify")
@click.argument("file", metavar="FILE_OR_URL")
@click.option("--model", "model_name", default="official", show_default=True, help="official or tiny.")
def weights_verify(file: str, model_name: str) -> None:
    """Check that FILE_OR_URL loads strictly into the network: every name and shape, nothing else.

    Prints its sha256, parameter and tensor counts and OK; exits 1 listing missing and unexpected
    tensor names when it does not fit.
    """
    from model.weights import WeightsError, resolve_weights, verify_weights

    try:
        resolved = resolve_weights(file)
        if resolved.path is None:
            raise click.UsageError(f"{file} names synthetic weights: there is no file to verify")
        report = verify_weights(resolved.path, model_name=model_name)
    except (WeightsError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{report.path}\nsha256 {report.sha256}")
    click.echo(f"{report.parameters:,} parameters in {report.tensors} tensors fit the {report.model} network")
    click.echo("OK")


@weights.command("path")
@settings_options
def weights_path(config: Path | None, overrides: tuple[str, ...]) -> None:
    """Print where a run with these settings takes its weights from (model.weights), fetching nothing."""
    from model.weights import WeightsError, describe_resolution

    settings = load_cli_settings(config, overrides)
    try:
        click.echo(describe_resolution(settings.model.weights))
    except WeightsError as error:
        raise click.ClickException(str(error)) from None


@main.group("manifest")
def manifest_group() -> None:
    """The input manifest: a Parquet file listing the videos a run restores (uri, video_id, ...)."""


@manifest_group.command("build")
@click.argument("sources", nargs=-1, required=True, metavar="PATH_OR_GLOB...")
@click.option(
    "-o", "--output", required=True, metavar="FILE_OR_URL",
    help="Manifest to write, e.g. archive.parquet or s3://bucket/archive.parquet.",
)
def manifest_build(sources: tuple[str, ...], output: str) -> None:
    """Find the videos under folders, files, globs or buckets and write them as a manifest.

    Folders are searched recursively for video files (.mp4 .mov .mkv .avi .m4v .webm .mxf .ts ...);
    quote globs and URLs: 'archive/*/*.mov' 's3://bucket/films/*.mp4'. The manifest holds uri,
    video_id (derived from the uri), size_bytes and modified.
    """
    from pipeline.manifest import ManifestError, build_manifest

    try:
        videos = build_manifest(sources, output)
    except ManifestError as error:
        raise click.ClickException(str(error)) from None
    megabytes = videos["size_bytes"].fillna(0).sum() / 1e6
    size = f"{megabytes / 1000:.2f} GB" if megabytes >= 1000 else f"{megabytes:.1f} MB"
    click.echo(f"found {len(videos)} videos ({size}) -> {output}")


@manifest_group.command("check")
@click.argument("manifest", metavar="FILE_OR_URL")
def manifest_check(manifest: str) -> None:
    """Validate a manifest as a run would (uri column, ids, duplicates) and say what it holds."""
    from pipeline.manifest import ManifestError, extra_columns, read_manifest

    try:
        videos = read_manifest(manifest)
    except ManifestError as error:
        raise click.ClickException(str(error)) from None
    extras = ", ".join(extra_columns(videos)) or "none"
    click.echo(f"{manifest}: {len(videos)} videos; columns carried to the catalog: {extras}")


@main.command("run")
@click.option("--manifest", "manifest_path", required=True, metavar="PARQUET",
              help="Manifest of the videos to restore (uri, optional video_id); see `dpt-batch manifest`.")
@click.option("--output", "output", required=True, metavar="FOLDER|URL",
              help="Output folder or URL (s3://bucket/run): videos/, catalog/, state/ and run.json go there.")
@settings_options
@click.option("--address", default=None, metavar="ADDRESS",
              help="Ray cluster to run on (auto on a node of the cluster, or HEAD:6379); default: the "
                   "job's cluster inside a Ray job (RAY_ADDRESS), else an embedded local Ray.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Restore only the first N videos.")
@click.option("--dry-run", is_flag=True, help="Print the plan (videos, clips, face-frames estimate); stop.")
@click.option("--retry-failed", is_flag=True,
              help="Process again the videos an earlier run on this output recorded as failed.")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for intermediate files (default OUTPUT/work; for a URL output, a folder "
                   "under the cache named after it).")
def run_command(
    manifest_path: str, output: str, config, overrides, address, limit, dry_run, retry_failed, work_dir
) -> None:
    """Restore the faces of every video in a manifest.

    Rerunning the same command on the same output goes on where an earlier (killed) run stopped:
    finished clips and videos are kept, failed videos too unless --retry-failed, and anything made
    under other settings or from a changed source file is done again.

    Exit status: 0 when every video is done, 1 when any failed (see catalog/videos.parquet), 2 for a
    bad manifest, setting or option, or an output in use by a live run (nothing is started then).
    """
    from pipeline.lock import RunLockedError
    from pipeline.manifest import ManifestError, read_manifest
    from pipeline.plan import dry_run_cluster, format_plan, format_speed, plan_archive
    from pipeline.run import SetupError, format_summary, run_manifest

    settings = load_cli_settings(config, overrides)
    try:
        manifest = read_manifest(manifest_path)
    except ManifestError as error:
        raise click.UsageError(str(error)) from None
    if limit:
        manifest = manifest.head(limit)
    if dry_run:
        with click.progressbar(length=len(manifest), label="planning", file=sys.stderr) as bar:
            plans = plan_archive(manifest, settings, progress=bar.update)
        click.echo("\n".join(format_plan(plans)))
        try:
            click.echo("\n".join(format_speed(plans, settings, dry_run_cluster(settings, address))))
        except SetupError as error:
            click.echo(f"this cluster could not run it: {error}")
        return
    click.echo(f"restoring {len(manifest)} videos into {output}", err=True)
    try:
        summary = run_manifest(manifest, output, settings, address, report=partial(click.echo, err=True),
                               retry_failed=retry_failed, work_root=work_dir)  # fmt: skip
    except (SetupError, RunLockedError) as error:
        raise click.UsageError(str(error)) from None
    click.echo("\n".join(format_summary(summary)))
    if summary.failed:
        sys.exit(1)


@main.command("status")
@click.argument("output", metavar="OUTPUT")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="The run's --work-dir, if it was given (for a URL output, it holds the run lock).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(output: str, work_dir: Path | None, as_json: bool) -> None:
    """Progress of the run(s) on OUTPUT (a folder or URL): videos and clips done, failed and pending,
    face-frames restored, throughput and ETA; while a run is live and after it ended."""
    import json

    from pipeline.status import NoRunError, format_status, read_status

    try:
        status = read_status(output, work_dir=work_dir)
    except NoRunError as error:
        raise click.UsageError(str(error)) from None
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2, default=str))
    else:
        click.echo("\n".join(format_status(status)))


@main.command("report")
@click.argument("output", metavar="OUT")
@click.option("-o", "--to", "destination", default=None, metavar="DIR",
              help="Write the report into DIR (a folder or URL) instead of OUT/report. Pictures DIR cannot "
                   "link to on OUT's storage (an s3:// OUT reported into a local folder) are copied into "
                   "DIR/pictures/, so the report stands alone; a local OUT's pictures are linked by "
                   "relative path.")
def report_command(output: str, destination: str | None) -> None:
    """Write the quality-control report of the run on OUT (a folder or URL): static HTML that opens
    from disk (file://), with no server and nothing fetched from the network.

    \b
    DIR/index.html         totals (videos done and failed, failures by cause, frames, face-frames,
                           frames per second), time per stage, the 20 least stable face tracks with
                           their contact sheets, and a table of the videos that sorts by any column,
                           filters by status and manifest columns (index.html#status=failed) and pages
    DIR/videos/ID.html     a page per video: facts, error, its tracks worst first with their metrics,
                           contact sheets (input above restored) and flipbooks

    Prints the path of index.html. Exit status 2 when OUT holds no catalog.
    """
    from pipeline.report import ReportError, write_report

    try:
        report = write_report(output, destination)
    except ReportError as error:
        refused = click.ClickException(str(error))
        refused.exit_code = 2
        raise refused from None
    copied = f", {report.pictures_copied} pictures copied into it" if report.pictures_copied else ""
    click.echo(f"report of {report.videos} videos (a page each{copied}):", err=True)
    click.echo(report.index)


@main.command("submit", context_settings={"ignore_unknown_options": True})
@click.option("--address", required=True, metavar="URL",
              help="The cluster's Ray dashboard (Jobs API), e.g. http://HEAD:8265.")
@click.option("--wait", is_flag=True,
              help="Follow the job's logs until it ends, and exit with its exit status.")
@click.option("--working-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Upload this source tree with the job and run it from there (without .venv, .git, out/, "
                   "demo/, bench-results/); default: the dpt-batch installed on the cluster.")
@click.option("--env", "env_names", multiple=True, metavar="NAME",
              help="Pass this environment variable of this shell to the job, e.g. --env DPT_CACHE_DIR "
                   "--env AWS_PROFILE (repeatable; NAME=VALUE sets a value).")
@click.argument("command_line", nargs=-1, required=True, type=click.UNPROCESSED,
                metavar="-- COMMAND [ARGS]...")
def submit_command(address: str, wait: bool, working_dir: Path | None, env_names, command_line) -> None:
    """Run a dpt-batch command line on a Ray cluster, as a job submitted through Ray's Jobs API.

    \b
        dpt-batch submit --address http://HEAD:8265 --wait -- run --manifest M --output OUT

    The job runs `python -m pipeline.cli COMMAND ARGS` on the head node; `run` uses the job's cluster.
    Paths are the cluster's. Prints the job id; with --wait, follows the job's logs.

    Exit status: without --wait 0 once submitted; with --wait 0 when the job succeeded, else its
    command's exit status (1 when Ray did not record one); 2 when the job could not be submitted.
    """
    from pipeline.submit import SubmitError, follow, job_env_vars, submit

    if command_line[0] not in main.commands or command_line[0] == "submit":
        commands = ", ".join(sorted(name for name in main.commands if name != "submit"))
        raise click.UsageError(
            f"{command_line[0]!r} is not a dpt-batch command ({commands}); give the command line without "
            "`dpt-batch`, after --, e.g. -- run --manifest archive.parquet --output /restored"
        )
    try:
        env_vars = job_env_vars(env_names)
        client, job_id = submit(address, command_line, working_dir, env_vars)
    except SubmitError as error:
        refused = click.ClickException(str(error))
        refused.exit_code = 2
        raise refused from None
    if not wait:
        click.echo(job_id)
        click.echo(f"follow it with: ray job logs --follow {job_id} --address {address}", err=True)
        return
    click.echo(f"job {job_id} submitted to {address}; its logs follow (Ctrl-C leaves it running)", err=True)
    try:
        outcome = follow(client, job_id, partial(click.echo, nl=False))
    except KeyboardInterrupt:
        click.echo(f"\njob {job_id} goes on; stop it with: ray job stop {job_id} --address {address}",
                   err=True)
        sys.exit(130)
    click.echo(outcome.summary(), err=True)
    sys.exit(outcome.exit_code)


if __name__ == "__main__":
    main(prog_name="dpt-batch")  # python -m pipeline.cli, as a submitted job runs it
