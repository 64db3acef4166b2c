"""`dpt-batch report`: the QC report of a real run (the session's smoke run), read back the way a person
reads it, in a real browser; a 10,000-video catalog; S3 outputs; an output without a catalog."""
from __future__ import annotations

import posixpath
import re
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from browser_support import Browser, chromium_or_skip
from click.testing import CliRunner

from pipeline.catalog import read_catalog, write_catalog
from pipeline.cli import main
from pipeline.report import CHUNK_ROWS, PAGE_ROWS, failure_cause, page_names

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def report_cli(*args: str):
    return CliRunner().invoke(main, ["report", *args], catch_exceptions=False)


def picture_links(page: Path) -> list[str]:
    """The src of every <img> and the href of every link of a page that is not another page or anchor."""
    text = page.read_text()
    links = re.findall(r'<img [^>]*src="([^"]+)"', text) + re.findall(r'<a href="([^"#]+)"', text)
    return [unquote(link) for link in links if not link.endswith(".html")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Browser:
    return Browser(chromium_or_skip(), tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def smoke_report(smoke_run):
    out, _ = smoke_run
    started = time.perf_counter()
    result = report_cli(str(out))
    print(f"report of the smoke run: {time.perf_counter() - started:.2f} s")
    assert result.exit_code == 0, result.output
    return out, Path(result.stdout.strip().splitlines()[-1])


def test_the_report_lies_beside_the_run_and_links_its_pictures(smoke_report):
    out, index = smoke_report
    assert index == out / "report" / "index.html" and index.is_file()  # the path, printed last
    catalog = read_catalog(str(out))
    names = page_names(catalog.videos.video_id)
    text = index.read_text()
    assert len(text) < 200_000
    rows = (index.parent / "data" / "videos-0000.js").read_text()  # the table's rows, with their pages
    for video_id in catalog.videos.video_id:
        page = index.parent / "videos" / f"{names[video_id]}.html"
        assert page.is_file() and f'"{names[video_id]}"' in rows
        for link in picture_links(page):
            assert (page.parent / link).resolve().is_file(), f"{page.name}: {link} leads nowhere"
    film_a = (index.parent / "videos" / "film_a.html").read_text()
    restored = catalog.tracks[(catalog.tracks.video_id == "film_a") & catalog.tracks.restored]
    assert film_a.count('class="sheet"') == film_a.count('class="flipbook"') == min(24, len(restored))
    letter = (index.parent / "videos" / "letter.html").read_text()
    error = catalog.videos.set_index("video_id").loc["letter", "error"]
    assert 'class="error"' in letter and "letter.mp4" in letter and error.split(":")[0] in letter
    for cause in {failure_cause(error) for error in catalog.videos.error[catalog.videos.status == "failed"]}:
        assert cause in text  # failures grouped by stage and exception type
    assert 'id="least-stable"' in text and 'id="videos"' in text


def test_the_browser_loads_every_picture_and_filters_the_failed_videos(smoke_report, browser):
    out, index = smoke_report
    catalog = read_catalog(str(out))
    failed = set(catalog.videos.video_id[catalog.videos.status == "failed"])
    assert failed == {"letter", "gone"}

    result = browser.self_test(index, "#status=failed")

    assert result["rows_loaded"] == len(catalog.videos)
    assert sorted(result["matching"]) == sorted(result["shown"]) == sorted(failed)
    restored = catalog.tracks[catalog.tracks.restored]
    assert result["images"] == min(20, len(restored)) and result["broken"] == []
    assert all(width > 0 and height > 0 for width, height in result["sizes"])
    for video_id in ("film_a", "film_b"):
        page = browser.self_test(index.parent / "videos" / f"{video_id}.html")
        pictured = min(24, int((restored.video_id == video_id).sum()))
        assert page["images"] == 2 * pictured and page["broken"] == [], page  # sheets and flipbooks
        assert all(width > 0 and height > 0 for width, height in page["sizes"])
    browser.screenshot(index, ARTIFACTS / "report-index.png")
    browser.screenshot(index.parent / "videos" / "film_a.html", ARTIFACTS / "report-video.png")


def test_a_video_id_becomes_one_safe_file_name_each():
    ids = ["film_a", "Film_A", "reel 1/film<1>", "../../etc/passwd", "ünï", "a&b\"'", ".hidden", "x" * 300]
    names = page_names(ids)
    assert names["film_a"] != names["Film_A"] and names["film_a"].lower() != names["Film_A"].lower()
    assert len(set(names.values())) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._~-]{0,80}", name) for name in names.values()), names
    assert page_names(["film_b"]) == {"film_b": "film_b"}  # plain ids keep their name


def test_a_failure_cause_is_its_stage_and_exception_type():
    assert failure_cause("probe: MediaError: /a/b.mp4: zero-byte file") == "probe: MediaError"
    assert failure_cause("restore: WorkerDiedError: died 3 times") == "restore: WorkerDiedError"
    assert failure_cause("assemble: frames 10 != 12") == "assemble"
    assert failure_cause("") == "(no error recorded)"


def synthetic_catalog(out: Path, count: int) -> tuple[list[dict], list[dict]]:
    """`count` videos (every 10th failed, tracks with metrics and no pictures), ids with awkward
    characters among them, in collections c0..c4."""
    videos, tracks = [], []
    for number in range(count):
        video_id = f"reel {number % 40}/<film> {number}" if number % 97 == 0 else f"film_{number:05d}"
        failed = number % 10 == 3
        videos.append({
            "video_id": video_id, "uri": f"s3://archive/{number}.mp4",
            "status": "failed" if failed else "done",
            "error": f"probe: MediaError: <b>{number}</b>.mp4: zero-byte file" if failed else "",
            "frames_in": 1000 + number, "frames_out": None if failed else 1000 + number, "duration_s": 40.0,
            "width": 1280, "height": 720, "clips": 3, "tracks": 2, "faces_restored": 0 if failed else 400,
            "seconds_probe": 1.0, "seconds_faces": 4.0, "seconds_restore": 20.0, "seconds_encode": 3.0,
            "seconds_total": 30.0, "collection": f"c{number % 5}", "reel": number % 40,
        })  # fmt: skip
        for track_id in range(0 if failed else 2):
            before = 1 + (number * 7 + track_id) % 13 / 4
            tracks.append({
                "video_id": video_id, "clip_index": 0, "track_id": track_id, "first_frame": 0,
                "last_frame": 99, "frames": 100, "restored": True, "warp_error_before": before,
                "warp_error_after": before + (number % 17) / 5, "change_before": 3.0, "change_after": 4.0,
                "landmark_jitter": 0.5, "psnr_restored": 30.0, "worst_frame": 50, "worst_stretch_start": 42,
            })  # fmt: skip
    write_catalog(str(out), videos, [], tracks, ["collection", "reel"])
    return videos, tracks


def test_ten_thousand_videos_report_in_seconds_into_a_small_index(tmp_path, browser):
    videos, _ = synthetic_catalog(tmp_path / "out", 10_000)
    started = time.perf_counter()
    result = report_cli(str(tmp_path / "out"), "-o", str(tmp_path / "qc"))
    seconds = time.perf_counter() - started
    print(f"report of 10,000 videos: {seconds:.1f} s")
    assert result.exit_code == 0, result.output
    assert seconds < 45
    index = tmp_path / "qc" / "index.html"
    assert index.stat().st_size < 100_000
    chunks = sorted(path.name for path in (tmp_path / "qc" / "data").iterdir())
    assert chunks == [f"videos-{number:04d}.js" for number in range(10_000 // CHUNK_ROWS)]
    assert len(list((tmp_path / "qc" / "videos").iterdir())) == 10_000
    awkward = next(video for video in videos if video["status"] == "failed" and "<" in video["video_id"])
    page = (tmp_path / "qc" / "videos" / f"{page_names([awkward['video_id']])[awkward['video_id']]}.html")
    assert "&lt;film&gt;" in page.read_text() and "<film>" not in page.read_text()
    assert "<b>" not in page.read_text()  # the error, escaped

    shown = browser.self_test(index, "#status=failed&collection=c3&reel=13&sort=-frames_in")

    expected = [video for video in videos
                if (video["status"], video["collection"], video["reel"]) == ("failed", "c3", 13)]  # fmt: skip
    expected.sort(key=lambda video: -video["frames_in"])
    assert shown["rows_loaded"] == 10_000
    assert shown["matching"] == [video["video_id"] for video in expected]
    assert shown["shown"] == [video["video_id"] for video in expected[:PAGE_ROWS]]


def test_an_s3_output_is_reported_beside_it_and_into_a_local_folder(smoke_run, moto_s3, tmp_path, browser):
    import fsspec

    out, _ = smoke_run
    fs = fsspec.filesystem("s3")
    for part in ("catalog", "report/pictures"):
        fs.put(str(out / part), f"archive/run/{part}", recursive=True)
    fs.put(str(out / "run.json"), "archive/run/run.json")

    beside = report_cli("s3://archive/run")
    assert beside.exit_code == 0, beside.output
    assert beside.stdout.strip().splitlines()[-1] == "s3://archive/run/report/index.html"
    pages = fs.glob("archive/run/report/videos/*.html")
    assert len(pages) == 4 and fs.isfile("archive/run/report/index.html")
    for page in pages:
        for link in re.findall(r'<img [^>]*src="([^"]+)"', fs.cat_file(page).decode()):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(link)))
            assert target.startswith("archive/run/report/pictures/") and fs.isfile(target), link

    local = report_cli("s3://archive/run", "-o", str(tmp_path / "qc"))
    assert local.exit_code == 0, local.output
    assert "pictures copied" in local.output
    film_a = tmp_path / "qc" / "videos" / "film_a.html"
    for link in picture_links(film_a):  # copies in the report's folder
        copy = (film_a.parent / link).resolve()
        assert copy.is_relative_to(tmp_path / "qc") and copy.is_file(), link
    checked = browser.self_test(film_a)
    assert checked["images"] > 0 and checked["broken"] == []


def test_an_output_without_a_catalog_exits_2_naming_it(tmp_path):
    result = report_cli(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert str(tmp_path / "nowhere") in result.output and "dpt-batch run" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_the_report_never_goes_into_the_output_folder_itself(tmp_path):
    synthetic_catalog(tmp_path / "out", 3)
    result = report_cli(str(tmp_path / "out"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "videos/ holds the films" in result.output
    assert not (tmp_path / "out" / "index.html").exists()
