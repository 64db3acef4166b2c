"""`dpt-batch report OUT [-o DIR]`: a run's quality-control report, static HTML that opens from disk.

    DIR/index.html            the run's totals, failures by cause, time per stage (an SVG chart), the
                              least stable face tracks with their contact sheets, the table of videos
    DIR/data/videos-NNNN.js   the table's rows, CHUNK_ROWS videos a file, loaded by <script src>
                              (browsers refuse fetch() of file:// URLs; a script tag still loads them)
    DIR/videos/NAME.html      a page per video: its facts, its error, the sheets and flipbooks of its
                              PICTURED_TRACKS least stable tracks, and all its tracks, worst first
    DIR/assets/               report.css and report.js (sorting, filtering, paging; no library, nothing
                              fetched from the network)

Everything comes from the catalogs (`pipeline.catalog.read_catalog`), run.json and, for the latest
run's throughput, its run records (`pipeline.status.read_status`); nothing in OUT is changed but DIR.
DIR defaults to OUT/report, beside the pictures the run made (OUT/report/pictures/), for a local
folder and an s3:// URL alike. Pages link the pictures by relative path when OUT and DIR are on the
same storage (both local, or the same bucket); otherwise (an S3 output reported into a local folder)
the pictures the pages show are copied into DIR/pictures/, so that such a report stands alone.

Tracks are ranked by the flicker restoration added: warp_error_after - warp_error_before (both measured
with the input's optical flow, so the source's own motion cancels out; see pipeline.faces.stability).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd

from pipeline.catalog import VIDEOS_SCHEMA, Catalog, CatalogError, read_catalog
from pipeline.storage import filesystem, is_url, join

REPORT_DIR = "report"
CHUNK_ROWS = 1000
PAGE_ROWS = 100
LEAST_STABLE_SHOWN = 20
PICTURED_TRACKS = 24
CAUSES_SHOWN = 20
EXAMPLES_PER_CAUSE = 5
SELECT_MAX_VALUES = 200  # a manifest column with more distinct values is searched, not picked from a list
RANKED_BY = "flicker_added"
STAGES = (
    ("seconds_probe", "probe, scene cuts"),
    ("seconds_faces", "faces: detect, track, align"),
    ("seconds_restore", "restore (DP-TempCoh)"),
    ("seconds_encode", "paste back, encode, join"),
)
RESERVED_HASH_KEYS = frozenset({"sort", "page", "search"})
ASSETS = ("report.css", "report.js")
TRACK_METRICS = ("change_before", "change_after", "landmark_jitter", "psnr_restored", "worst_frame",
                 "mean_score")  # fmt: skip
_WRITE_BATCH = 256
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ReportError(ValueError):
    """OUT holds no readable catalog; the message names OUT and the fix."""


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote: index.html's location, the videos (one page each), the pictures copied."""

    index: str
    videos: int
    pictures_copied: int


@dataclass(frozen=True)
class Throughput:
    """Frames per wall second and what they count, in words (a resumed run's kept videos are not its)."""

    frames: int
    seconds: float | None
    counts: str

    @property
    def per_second(self) -> float | None:
        return self.frames / self.seconds if self.seconds else None


def write_report(out: str, dest: str | None = None) -> Report:
    """Write the QC report of the run in `out` (a folder or URL) into `dest` (default OUT/report).

    Raises:
        ReportError: `out` holds no catalog (no finished run wrote there), or `dest` is OUT itself (whose
            videos/ holds the films).
    """
    out = _absolute(out)
    dest = _absolute(dest) if dest else join(out, REPORT_DIR)
    if dest.rstrip("/") == out.rstrip("/"):
        raise ReportError(f"{dest} is the run's output folder, whose videos/ holds the films: without -o "
                          f"the report goes into {join(out, REPORT_DIR)}; or give another folder")
    try:
        catalog = read_catalog(out)
    except CatalogError as error:
        raise ReportError(
            f"{out} holds no run catalog ({error}); give the --output folder of a finished "
            f"`dpt-batch run` (run `dpt-batch run --manifest ... --output {out}` first)"
        ) from None
    videos = _records(catalog.videos)
    tracks = ranked_tracks(catalog.tracks)
    names = page_names(video["video_id"] for video in videos)
    links = PictureLinks(out, dest)
    sink = _Sink(dest)
    tracks_of: dict[str, list[dict[str, Any]]] = {}
    for track in tracks:
        tracks_of.setdefault(track["video_id"], []).append(track)
    manifest = _manifest_columns(catalog.videos)
    for video in videos:
        page = video_page(video, tracks_of.get(video["video_id"], []), links, manifest)
        sink.add(f"videos/{names[video['video_id']]}.html", page)
    columns, rows = table_rows(catalog.videos, videos, tracks_of, names)
    chunks = [rows[start : start + CHUNK_ROWS] for start in range(0, len(rows), CHUNK_ROWS)]
    for number, chunk in enumerate(chunks):
        sink.add(f"data/videos-{number:04d}.js", "dptVideos(" + _json(chunk) + ");\n")
    for asset in ASSETS:
        sink.add(f"assets/{asset}", resources.files("pipeline").joinpath("report_assets", asset).read_bytes())
    index = index_page(catalog, videos, tracks, names, links, columns, len(chunks), throughput(out, catalog))
    copied = links.copy_into(sink)
    sink.add("index.html", index)  # last: a report being rewritten keeps its old index until the end
    sink.flush()
    return Report(join(dest, "index.html"), len(videos), copied)


# ---------------------------------------------------------------------------------------------------
# what the pages say


def ranked_tracks(tracks: pd.DataFrame) -> list[dict[str, Any]]:
    """The tracks as plain dicts with `flicker_added` (warp_error_after - warp_error_before, None when
    either is missing), least stable first; tracks without the metrics (not restored) last."""
    rows = _records(tracks)
    for row in rows:
        before, after = row.get("warp_error_before"), row.get("warp_error_after")
        row[RANKED_BY] = after - before if before is not None and after is not None else None
    return sorted(rows, key=lambda row: (row[RANKED_BY] is None, -(row[RANKED_BY] or 0.0),
                                         -(row.get("warp_error_after") or 0.0)))  # fmt: skip


def failure_cause(error: str | None) -> str:
    """The cause of a failure, from "stage: ExceptionType: message": "stage: ExceptionType" (the stage
    alone when no exception type follows it)."""
    text = (error or "").strip()
    if not text:
        return "(no error recorded)"
    stage, _, rest = text.partition(": ")
    kind = rest.partition(":")[0].strip()
    return f"{stage}: {kind}" if re.fullmatch(r"[A-Za-z_][\w.]*", kind) else stage


def failures_by_cause(videos: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """(cause, video ids) of the failed videos, the most frequent cause first."""
    groups: dict[str, list[str]] = {}
    for video in videos:
        if video.get("status") == "failed":
            groups.setdefault(failure_cause(video.get("error")), []).append(video["video_id"])
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def stage_seconds(videos: pd.DataFrame) -> list[tuple[str, float]]:
    """(stage, seconds summed over the catalogued videos) of each stage, in the order of the journey."""
    return [(label, float(pd.to_numeric(videos[column], errors="coerce").fillna(0).sum())
             if column in videos.columns else 0.0) for column, label in STAGES]  # fmt: skip


def throughput(out: str, catalog: Catalog) -> Throughput | None:
    """Frames per wall second of the latest run on OUT, counting only what it did (from its run records),
    or, without records, every done video over run.json's wall time, saying so; None without either."""
    from pipeline.status import read_status

    try:
        status = read_status(out)
    except (ValueError, OSError):
        status = None
    if status is not None:
        counts = f"frames the latest run encoded ({status.run_id}) over its wall time"
        if status.videos_kept:
            counts += f"; the {status.videos_kept} videos kept from earlier runs are not counted"
        if status.live:
            counts += "; the run is still live"
        return Throughput(status.frames_this_run, status.seconds_this_run, counts)
    seconds = (catalog.run or {}).get("seconds")
    if not seconds:
        return None
    done = catalog.videos[catalog.videos.status == "done"]
    frames = int(pd.to_numeric(done.get("frames_out"), errors="coerce").fillna(0).sum())
    counts = ("frames of every done video in the catalog over run.json's wall time (OUT/state has no run "
              "records to tell which videos this run did)")  # fmt: skip
    return Throughput(frames, float(seconds), counts)


def page_names(video_ids: Iterable[str]) -> dict[str, str]:
    """video_id -> the file name (without .html) of its page: the id itself when it is a plain name
    (letters, digits, ._-, at most 100, not differing from another id by case alone), else its plain
    characters, "~" and a hash of the id. No plain name holds "~", so no two ids share a file, on a
    case-insensitive disk too."""
    ids = list(dict.fromkeys(str(video_id) for video_id in video_ids))
    plain = Counter(video_id.lower() for video_id in ids if _PLAIN_NAME.fullmatch(video_id))
    names = {}
    for video_id in ids:
        if _PLAIN_NAME.fullmatch(video_id) and plain[video_id.lower()] == 1:
            names[video_id] = video_id
        else:
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", video_id)[:60].lstrip(".")
            names[video_id] = f"{stem}~{hashlib.sha256(video_id.encode()).hexdigest()[:12]}"
    return names


class PictureLinks:
    """How a page in DEST reaches a picture the catalog names by its path relative to OUT: a relative
    link when both are on the same storage, else a copy in DEST/pictures/ (made by `copy_into`)."""

    def __init__(self, out: str, dest: str) -> None:
        self.out, self.dest = out, dest
        self.same_storage = _same_storage(out, dest)
        self.to_copy: dict[str, str] = {}  # path relative to OUT -> path relative to DEST

    def href(self, relative: str | None, depth: int) -> str | None:
        """The link to a picture from a page `depth` folders below DEST (None: no usable picture)."""
        clean = _inside(relative)
        if clean is None:
            return None
        if self.same_storage:
            target = _relative_path(join(self.out, *clean.split("/")), self.dest)
        else:
            target = "pictures/" + clean.removeprefix("report/").removeprefix("pictures/")
            self.to_copy[clean] = target
        return "../" * depth + quote(target)

    def copy_into(self, sink: _Sink) -> int:
        """Copy the linked pictures of OUT into the report (when it cannot link them); returns how many
        were copied (a picture missing in OUT stays missing, and its page shows its alt text)."""
        fs, root = filesystem(self.out)
        sources = {f"{root.rstrip('/')}/{relative}": target for relative, target in self.to_copy.items()}
        names = list(sources)
        copied = 0
        for start in range(0, len(names), _WRITE_BATCH):
            for name, data in fs.cat(names[start : start + _WRITE_BATCH], on_error="omit").items():
                sink.add(sources[name], data)
                copied += 1
        return copied


def table_rows(
    frame: pd.DataFrame, videos: Sequence[Mapping[str, Any]], tracks_of: Mapping[str, list[dict[str, Any]]],
    names: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[list[Any]]]:  # fmt: skip
    """The videos table: its columns ({key, label, kind, hash, pick}) and its rows ([page name, cell,
    ...]). `pick` marks the columns filtered by picking a value from a list (status, and manifest columns
    with at most SELECT_MAX_VALUES values; the page lists the values it finds); `hash` is the column's
    key in the URL hash."""
    manifest = _manifest_columns(frame)
    spec = [("video_id", "video", "id"), ("status", "status", "status")]
    spec += [(name, name, "number" if pd.api.types.is_numeric_dtype(frame[name]) else "text")
             for name in manifest]  # fmt: skip
    spec += [("duration_s", "length (s)", "number"), ("frames_in", "frames", "number"),
             ("size", "size", "text"), ("clips", "clips", "number"), ("tracks", "tracks", "number"),
             ("faces_restored", "face-frames", "number"), ("worst_flicker", "worst flicker", "number"),
             ("seconds_total", "took (s)", "number"), ("error", "error", "text")]  # fmt: skip
    columns = []
    for key, label, kind in spec:
        column = {"key": key, "label": label, "kind": kind,
                  "hash": f"col.{key}" if key in RESERVED_HASH_KEYS else key}  # fmt: skip
        if key == "status" or key in manifest:
            column["pick"] = len({_text(video.get(key)) for video in videos}) <= SELECT_MAX_VALUES
        columns.append(column)
    rows = []
    for video in videos:
        video_tracks = tracks_of.get(video["video_id"], [])
        worst = [track[RANKED_BY] for track in video_tracks if track[RANKED_BY] is not None]
        size = f"{video['width']}×{video['height']}" if video.get("width") and video.get("height") else None
        cells = {**video, "size": size, "worst_flicker": max(worst) if worst else None}
        rows.append([names[video["video_id"]], *(_cell(cells.get(key)) for key, _, _ in spec)])
    return columns, rows


# ---------------------------------------------------------------------------------------------------
# pages


def index_page(
    catalog: Catalog, videos: Sequence[Mapping[str, Any]], tracks: Sequence[Mapping[str, Any]],
    names: Mapping[str, str], links: PictureLinks, columns: list[dict[str, Any]], chunks: int,
    speed: Throughput | None,
) -> str:  # fmt: skip
    statuses = Counter(video.get("status") for video in videos)
    done = [video for video in videos if video.get("status") == "done"]
    restored = [track for track in tracks if track.get("restored")]
    frames_out = sum(video.get("frames_out") or 0 for video in done)
    film_seconds = sum(video.get("duration_s") or 0 for video in done)
    tiles = [
        ("videos", _int(len(videos)), "in the catalog"),
        ("done", _int(statuses["done"]), f"{_seconds(film_seconds)} of film"),
        ("failed", _int(statuses["failed"]), "see the causes below" if statuses["failed"] else ""),
        ("frames", _int(frames_out), "in the restored films"),
        ("face-frames restored", _int(sum(video.get("faces_restored") or 0 for video in videos)),
         f"in {_int(len(restored))} of {_int(len(tracks))} face tracks"),
    ]  # fmt: skip
    if statuses["skipped"]:
        tiles.insert(3, ("skipped", _int(statuses["skipped"]), ""))
    if speed and speed.per_second is not None:
        note = f"{_int(speed.frames)} frames in {_seconds(speed.seconds)}: {speed.counts}"
        tiles.append(("frames per second", f"{speed.per_second:,.1f}", note))
    else:
        tiles.append(("frames per second", "unknown", "no run records nor run.json say how long it took"))
    body = [
        f"<h1>Restoration report: {_e(_out_name(links.out))}</h1>",
        f"<p class=muted>{_run_line(catalog.run, links.out)}</p>",
        '<nav><a href="#failures">failures</a> · <a href="#stages">time per stage</a> · '
        '<a href="#least-stable">least stable tracks</a> · <a href="#videos-heading">all videos</a></nav>',
        '<div class="tiles">' + "".join(
            f'<div class="tile"><span class="label">{_e(label)}</span><b>{value}</b>'
            f'<span class="muted">{_e(note)}</span></div>' for label, value, note in tiles) + "</div>",
        _causes_section(videos, names),
        _stages_section(catalog.videos),
        _least_stable_section(tracks, names, links),
        _table_section(columns),
    ]  # fmt: skip
    config = {"columns": columns, "chunks": chunks, "total": len(videos), "pageRows": PAGE_ROWS}
    scripts = [f"<script>window.DPT_REPORT = {_json(config)};\nwindow.DPT_ROWS = [];\n"
               "function dptVideos(rows) { for (const row of rows) window.DPT_ROWS.push(row); }</script>"]
    scripts += [f'<script src="data/videos-{number:04d}.js"></script>' for number in range(chunks)]
    scripts.append('<script src="assets/report.js"></script>')
    return _page(f"Report: {_out_name(links.out)}", "\n".join(body), "\n".join(scripts), depth=0)


def video_page(
    video: Mapping[str, Any], tracks: Sequence[Mapping[str, Any]], links: PictureLinks,
    manifest: Sequence[str],
) -> str:  # fmt: skip
    """A video's page: facts, error, pictures of its least stable tracks, and all its tracks."""
    status = str(video.get("status") or "")
    badge = f'<span class="status {_e(status)}">{_e(status)}</span>'
    body = ['<nav><a href="../index.html">← all videos</a> · '
            f'<a href="../index.html#status={quote(status)}">{_e(status)} videos</a></nav>',
            f'<h1>{_e(video["video_id"])} {badge}</h1>']  # fmt: skip
    if video.get("error"):
        body.append(f'<pre class="error">{_e(video["error"])}</pre>')
    body.append(_facts(video, manifest))
    pictured = [track for track in tracks if track.get("sheet") or track.get("flipbook")][:PICTURED_TRACKS]
    if pictured:
        more = sum(1 for track in tracks if track.get("sheet") or track.get("flipbook")) - len(pictured)
        body.append(f"<h2>The {len(pictured)} least stable tracks</h2>")
        body.append("<p class=muted>Ranked by the flicker restoration added (warp error after − before, "
                    "0–255 grey levels over the face). Contact sheet: input row above restored row; "
                    "flipbook: input beside restored over the least stable stretch. Click a picture for "
                    "its full size."
                    + (f" {more} more tracks have pictures, not shown here to keep the page small." if more
                       else "") + "</p>")  # fmt: skip
        body.extend(_track_card(rank, track, links) for rank, track in enumerate(pictured, 1))
    body.append(_tracks_table(tracks))
    title = f"{video['video_id']} ({status})"
    return _page(title, "\n".join(body), '<script src="../assets/report.js"></script>', depth=1)


def _causes_section(videos: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> str:
    causes = failures_by_cause(videos)
    if not causes:
        return '<h2 id="failures">Failures</h2><p>None: every video is done.</p>'
    rows = []
    for cause, ids in causes[:CAUSES_SHOWN]:
        examples = ", ".join(f'<a href="videos/{quote(names[video_id])}.html">{_e(video_id)}</a>'
                             for video_id in ids[:EXAMPLES_PER_CAUSE])  # fmt: skip
        if len(ids) > EXAMPLES_PER_CAUSE:
            examples += f", … {len(ids) - EXAMPLES_PER_CAUSE} more"
        listed = f"#status=failed&search={quote(cause)}"
        rows.append(f'<tr><td><a href="{listed}">{_e(cause)}</a></td><td class="num">{len(ids)}</td>'
                    f"<td>{examples}</td></tr>")  # fmt: skip
    hidden = len(causes) - CAUSES_SHOWN
    more = f"<p class=muted>… and {hidden} rarer causes (filter the table below).</p>" if hidden > 0 else ""
    failed = sum(len(ids) for _, ids in causes)
    return (f'<h2 id="failures">Failures by cause</h2><p>{_int(failed)} videos failed. Cause = the stage '
            'and the exception type; <a href="#status=failed">list them all</a>.</p>'
            '<table><thead><tr><th>cause</th><th class="num">videos</th><th>for example</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{more}")  # fmt: skip


def _stages_section(videos: pd.DataFrame) -> str:
    seconds = stage_seconds(videos)
    total = sum(value for _, value in seconds)
    if total <= 0:
        return '<h2 id="stages">Time per stage</h2><p>No stage times in the catalog.</p>'
    label_width, bar_width, line = 210, 420, 30
    parts = []
    for row, (label, value) in enumerate(seconds):
        y = row * line
        share = value / total
        width = max(1.0, share * bar_width) if value else 0.0
        parts.append(
            f'<text x="0" y="{y + 19}">{_e(label)}</text>'
            f'<rect x="{label_width}" y="{y + 5}" width="{width:.1f}" height="20" fill="#4f7cac"/>'
            f'<text x="{label_width + width + 8:.1f}" y="{y + 19}">{share:.0%} · {_seconds(value)}</text>'
        )
    height = len(seconds) * line + 4
    svg = (f'<svg class="chart" width="{label_width + bar_width + 160}" height="{height}" role="img" '
           f'aria-label="share of time per stage">{"".join(parts)}</svg>')  # fmt: skip
    return ('<h2 id="stages">Time per stage</h2><p class=muted>'
            "Worker seconds of each stage summed over the catalogued "
            "videos (stages of different videos run side by side, so the sum exceeds the wall time); "
            f"{_seconds(total)} in all.</p>{svg}")  # fmt: skip


def _least_stable_section(
    tracks: Sequence[Mapping[str, Any]], names: Mapping[str, str], links: PictureLinks
) -> str:
    ranked = [track for track in tracks if track[RANKED_BY] is not None][:LEAST_STABLE_SHOWN]
    if not ranked:
        return '<h2 id="least-stable">Least stable tracks</h2><p>No restored track has stability metrics.</p>'
    rows = []
    for rank, track in enumerate(ranked, 1):
        video_id = track["video_id"]
        page = f"videos/{quote(names[video_id])}.html#{_anchor(track)}"
        sheet, book = links.href(track.get("sheet"), 0), links.href(track.get("flipbook"), 0)
        picture = (f'<a href="{book or sheet}"><img src="{sheet}" loading="lazy" class="sheet-small" '
                   f'alt="contact sheet of {_e(video_id)} clip {track["clip_index"]} track '
                   f'{track["track_id"]}"></a>' if sheet else "")  # fmt: skip
        rows.append(
            f'<tr><td class="num">{rank}</td><td><a href="{page}">{_e(video_id)}</a><br>'
            f'<span class="muted">clip {track["clip_index"]}, track {track["track_id"]}<br>'
            f'frames {track["first_frame"]}–{track["last_frame"]}</span></td>'
            f'<td class="num">{_num(track["warp_error_before"])}</td>'
            f'<td class="num">{_num(track["warp_error_after"])}</td>'
            f'<td class="num"><b>{_num(track[RANKED_BY], signed=True)}</b></td><td>{picture}</td></tr>'
        )
    return (f'<h2 id="least-stable">The {len(ranked)} least stable tracks</h2><p class=muted>Ranked by '
            "the flicker restoration added: warp error after − warp error before (mean abs difference, "
            "0–255, of each face crop warped onto the next with the input's optical flow, so the source's "
            "own motion cancels out). The sheet shows input above restored; click it for the flipbook.</p>"
            '<table class="tracks"><thead><tr><th class="num">#</th><th>track</th>'
            '<th class="num">warp error before</th><th class="num">after</th><th class="num">added</th>'
            f"<th>contact sheet</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def _table_section(columns: Sequence[Mapping[str, Any]]) -> str:
    return ('<h2 id="videos-heading">Videos</h2><p class=muted>Click a heading to sort; pick a status or a '
            "manifest value to filter, or search ids, errors and text columns. The filter is kept in the "
            "address (e.g. <code>index.html#status=failed</code>), so a link opens the table filtered.</p>"
            '<div id="filters" class="filters"></div><div class="pager" id="pager-top"></div>'
            '<div class="scroll"><table id="videos" class="videos"><thead></thead><tbody></tbody></table>'
            '</div><div class="pager" id="pager"></div>'
            "<noscript><p>The table needs JavaScript; every video has its page under videos/.</p></noscript>")


def _track_card(rank: int, track: Mapping[str, Any], links: PictureLinks) -> str:
    sheet, book = links.href(track.get("sheet"), 1), links.href(track.get("flipbook"), 1)
    label = f"clip {track['clip_index']} track {track['track_id']}"
    pictures = []
    if sheet:
        pictures.append(f'<a href="{sheet}"><img class="sheet" src="{sheet}" loading="lazy" '
                        f'alt="contact sheet, {label}"></a>')  # fmt: skip
    if book:
        pictures.append(f'<a href="{book}"><img class="flipbook" src="{book}" loading="lazy" '
                        f'alt="flipbook, {label}"></a>')  # fmt: skip
    metrics = (f"warp error {_num(track.get('warp_error_before'))} → {_num(track.get('warp_error_after'))} "
               f"(<b>{_num(track.get(RANKED_BY), signed=True)}</b>) · change "
               f"{_num(track.get('change_before'))} → {_num(track.get('change_after'))} · landmark jitter "
               f"{_num(track.get('landmark_jitter'))} px · PSNR {_num(track.get('psnr_restored'))} dB · "
               f"worst frame {_num(track.get('worst_frame'))}")  # fmt: skip
    return (f'<article class="track" id="{_anchor(track)}"><h3>{rank}. {label} · frames '
            f"{track['first_frame']}–{track['last_frame']} ({_int(track['frames'])})</h3>"
            f'<p class="metrics">{metrics}</p><div class="pictures">{"".join(pictures)}</div></article>')


def _tracks_table(tracks: Sequence[Mapping[str, Any]]) -> str:
    if not tracks:
        return "<h2>Tracks</h2><p>No face tracks were found in this video.</p>"
    heads = ["clip", "track", "frames", "restored", "warp error before", "after", "added", "change before",
             "after", "landmark jitter (px)", "PSNR (dB)", "worst frame", "score"]  # fmt: skip
    rows = []
    for track in tracks:
        reason = track.get("skip_reason") or ""
        restored = "yes" if track.get("restored") else _e(f"no: {reason}" if reason else "no")
        cells = [_num(track.get(name)) for name in ("warp_error_before", "warp_error_after")]
        cells.append(_num(track.get(RANKED_BY), signed=True))
        cells += [_num(track.get(name)) for name in TRACK_METRICS]
        rows.append(
            f'<tr id="row-{_anchor(track)}"><td class="num">{track["clip_index"]}</td>'
            f'<td class="num">{track["track_id"]}</td>'
            f'<td class="num">{track["first_frame"]}–{track["last_frame"]} ({_int(track["frames"])})</td>'
            f"<td>{restored}</td>" + "".join(f'<td class="num">{cell}</td>' for cell in cells) + "</tr>"
        )
    head = "".join(f'<th class="{"" if name == "restored" else "num"}">{_e(name)}</th>' for name in heads)
    return (f"<h2>All {len(tracks)} tracks, least stable first</h2><div class=scroll><table class=tracks>"
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _facts(video: Mapping[str, Any], manifest: Sequence[str]) -> str:
    shown = [name for name in VIDEOS_SCHEMA.names if name not in ("video_id", "status", "error")]
    items = [(name, video.get(name)) for name in [*manifest, *shown]]
    return '<dl class="facts">' + "".join(
        f"<div><dt>{_e(name)}</dt><dd>{_fact(value)}</dd></div>" for name, value in items) + "</dl>"


def _page(title: str, body: str, scripts: str, depth: int) -> str:
    assets = "../" * depth + "assets"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title>"
            f'<link rel="stylesheet" href="{assets}/report.css"></head>\n<body>\n{body}\n{scripts}\n'
            "</body></html>\n")  # fmt: skip


def _run_line(run: Mapping[str, Any] | None, out: str) -> str:
    if not run:
        return f"{_e(out)}: no run.json (the run wrote none)."
    model = (run.get("config") or {}).get("model") or {}
    version = (run.get("versions") or {}).get("dpt-batch", "?")
    started = str(run.get("started", "?")).replace("T", " ")[:19]
    return _e(f"{out}: run started {started} UTC on {run.get('hostname', '?')}, "
              f"{_seconds(run.get('seconds'))} of wall time; network {model.get('name', '?')}, weights "
              f"{run.get('weights', '?')}; dpt-batch {version}.")  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# values


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    """A catalog value as plain Python: None for every kind of missing, numpy scalars unwrapped."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if not isinstance(value, (str, int, float, bool)):
        return str(value)
    return value


def _cell(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _manifest_columns(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if name not in VIDEOS_SCHEMA.names]


def _anchor(track: Mapping[str, Any]) -> str:
    return f"clip{int(track['clip_index'])}-track{int(track['track_id'])}"


def _e(text: Any) -> str:
    return html.escape(_text(text), quote=True)


def _int(value: Any) -> str:
    return f"{int(value):,}"


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return f"{value:,}"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _fact(value: Any) -> str:
    if value is None or value == "":
        return '<span class="muted">–</span>'
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return _num(value) if isinstance(value, int) and not isinstance(value, bool) else _e(value)


def _seconds(value: Any) -> str:
    if value is None:
        return "? s"
    value = float(value)
    if value >= 3600:
        return f"{value / 3600:,.1f} h"
    return f"{value / 60:,.1f} min" if value >= 120 else f"{value:,.1f} s"


def _json(value: Any) -> str:
    """JSON that is also safe inside an HTML <script> element."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def _out_name(out: str) -> str:
    return out.rstrip("/").rsplit("/", 1)[-1] if is_url(out) else os.path.basename(out.rstrip(os.sep)) or out


# ---------------------------------------------------------------------------------------------------
# locations


def _absolute(location: str) -> str:
    location = str(location)
    return location if is_url(location) else os.path.abspath(location)


def _same_storage(out: str, dest: str) -> bool:
    if is_url(out) != is_url(dest):
        return False
    if not is_url(out):
        return os.path.splitdrive(out)[0].lower() == os.path.splitdrive(dest)[0].lower()
    return urlsplit(out)[:2] == urlsplit(dest)[:2]


def _relative_path(target: str, start: str) -> str:
    """`target` relative to the folder `start`, both local paths or both URLs on one storage."""
    if is_url(target):
        return posixpath.relpath(urlsplit(target).path, urlsplit(start).path)
    return os.path.relpath(target, start).replace(os.sep, "/")


def _inside(relative: str | None) -> str | None:
    """A catalog's picture path (relative to OUT), normalised; None when empty or when it would leave
    OUT (an absolute path, a URL or ..)."""
    if not relative or not isinstance(relative, str) or "://" in relative:
        return None
    clean = posixpath.normpath(relative.replace("\\", "/"))
    if clean.startswith(("/", "../")) or clean in (".", ".."):
        return None
    return clean


class _Sink:
    """Files of the report, written into DEST (local folder or URL) in batches (concurrently on S3)."""

    def __init__(self, dest: str) -> None:
        self.fs, root = filesystem(dest)
        self.root = root.rstrip("/")
        self.pending: dict[str, bytes] = {}
        self.made: set[str] = set()

    def add(self, relative: str, content: str | bytes) -> None:
        self.pending[f"{self.root}/{relative}"] = content.encode() if isinstance(content, str) else content
        if len(self.pending) >= _WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        for parent in {path.rsplit("/", 1)[0] for path in self.pending} - self.made:
            self.fs.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        self.fs.pipe(self.pending)
        self.pending = {}
