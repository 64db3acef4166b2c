"""Probe, decode, encode and join videos with the real ffmpeg and PyAV."""
from __future__ import annotations

import fcntl
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_missing
from video_support import make_video

from pipeline import media
from pipeline.config import EncodeSettings
from pipeline.media import (
    Colour,
    I420Converter,
    MediaError,
    VideoWriter,
    concat_clips,
    ffmpeg_exe,
    i420_planes,
    i420_to_rgb,
    iter_frames,
    probe,
    read_frames,
    rgb_to_i420,
    write_video,
)

NTSC_FILM = Fraction(24000, 1001)
FAST = EncodeSettings(preset="ultrafast", crf=12)


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """40 frames of testsrc at 24000/1001 fps with a sine soundtrack and two subtitles."""
    return make_video(tmp_path_factory.mktemp("media") / "film.mkv", 40, audio=True, subtitles=True)


def ffmpeg_decode(path: Path, width: int, height: int, pix_fmt: str = "rgb24") -> np.ndarray:
    """TxHxWx3 RGB frames as the ffmpeg command line decodes them (rotation applied), or with pix_fmt
    yuv420p/yuvj420p Tx(H*3/2)xW I420 pictures."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path)]
    command += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    shape = (height, width, 3) if pix_fmt == "rgb24" else (height * 3 // 2, width)
    return np.frombuffer(raw, np.uint8).reshape(-1, *shape)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_ffmpeg_exe_honours_the_environment(monkeypatch, tmp_path):
    found = ffmpeg_exe()
    assert os.access(found, os.X_OK)
    monkeypatch.setenv("DPT_FFMPEG", found)
    assert ffmpeg_exe() == found
    monkeypatch.setenv("DPT_FFMPEG", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(MediaError, match="DPT_FFMPEG"):
        ffmpeg_exe()


def test_probe_reads_exact_rate_count_and_streams(film):
    info = probe(film)
    assert info.frame_rate == NTSC_FILM
    assert info.frame_count == 40
    assert (info.width, info.height) == (64, 48)
    assert info.duration_s == pytest.approx(40 * 1001 / 24000)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.bit_depth == 8
    assert info.has_audio and info.has_subtitles
    assert info.rotation == 0


def test_probe_mp4_at_integer_rate_without_audio(tmp_path):
    info = probe(make_video(tmp_path / "plain.mp4", 25, rate="25"))
    assert info.frame_rate == Fraction(25) and info.frame_count == 25
    assert not info.has_audio and not info.has_subtitles


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_video_decodes_upright_like_ffmpeg(tmp_path, rotation):
    path = make_video(tmp_path / "portrait.mp4", 3, size="128x96", rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == (96, 128)
    frames = read_frames(path, 0, 3)
    assert frames.shape == (3, 128, 96, 3)
    np.testing.assert_array_equal(frames, ffmpeg_decode(path, 96, 128))


def test_probe_reads_bit_depth(tmp_path):
    info = probe(make_video(tmp_path / "deep.mkv", 4, pix_fmt="yuv420p10le"))
    assert info.pix_fmt == "yuv420p10le" and info.bit_depth == 10


def test_probe_real_footage(shared_dir):
    clips = sorted((shared_dir / "footage").glob("*.mp4"))
    if not clips:
        shared_missing(f"no footage in {shared_dir / 'footage'}")
    info = probe(clips[0])
    assert (info.width, info.height, info.frame_rate) == (512, 512, Fraction(20))
    assert info.frame_count == len(read_frames(clips[0], 0, info.frame_count))


def test_probe_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match=r"missing\.mp4: video file not found"):
        probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(MediaError, match=r"junk\.mp4"):
        probe(junk)


def test_read_frames_matches_batched_iteration(film):
    whole = read_frames(film, 0, 40)
    assert whole.shape == (40, 48, 64, 3) and whole.dtype == np.uint8
    batches = list(iter_frames(film, start=5, end=33, batch=8))
    assert [first for first, _ in batches] == [5, 13, 21, 29]
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), whole[5:33])
    np.testing.assert_array_equal(read_frames(film, 10, 12), whole[10:12])
    assert read_frames(film, 0, 40, width=32, height=24).shape == (40, 24, 32, 3)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_a_range_in_the_middle_is_frame_exact_after_a_seek(tmp_path, suffix):
    # GOPs of 12 frames with B-frames: frames 25..39 start mid-GOP, and decode order is not display order;
    # MP4 seeks by decoding times, Matroska by presentation times, MPEG-TS by searching the file
    path = make_video(tmp_path / f"gops{suffix}", 60, size="128x96", gop=12, b_frames=2)
    assert decode_order_differs_from_display_order(path)
    sequential = read_frames(path, 0, 60)
    assert len({frame.tobytes() for frame in sequential}) == 60
    np.testing.assert_array_equal(sequential, ffmpeg_decode(path, 128, 96))

    np.testing.assert_array_equal(read_frames(path, 25, 40), sequential[25:40])
    batches = list(iter_frames(path, 25, 40, batch=4))
    assert [first for first, _ in batches] == [25, 29, 33, 37]
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in batches]), sequential[25:40])
    np.testing.assert_array_equal(read_frames(path, 59, 60), sequential[59:])


def test_iterating_a_whole_file_yields_the_frames_probe_counts(film, tmp_path):
    gops = make_video(tmp_path / "gops.mp4", 60, size="128x96", gop=12, b_frames=2)
    # a stream copy from 0.7 s keeps the frames from the keyframe at 0.48 s, which an edit list hides
    cut = tmp_path / "cut.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-ss", "0.7",
                    "-i", str(gops), "-c", "copy", str(cut)], check=True)  # fmt: skip
    shown = ffmpeg_decode(cut, 128, 96)
    assert probe(cut).frame_count == len(shown) < 60 - 12
    for path in (film, gops, cut):
        batches = list(iter_frames(path, batch=16))
        assert sum(len(batch) for _, batch in batches) == probe(path).frame_count
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in batches]), shown)


def decode_order_differs_from_display_order(path: Path) -> bool:
    import av

    with av.open(str(path)) as container:
        times = [packet.pts for packet in container.demux(video=0) if packet.size]
    return times != sorted(times)


def test_read_frames_outside_the_video(film):
    with pytest.raises(MediaError, match=r"film\.mkv: frames \[30, 41\) are outside the video's 40 frames"):
        read_frames(film, 30, 41)


def test_writer_encodes_batches_at_the_exact_rate(film, tmp_path):
    frames = read_frames(film, 0, 40)
    out = tmp_path / "encoded.mp4"
    with VideoWriter(out, 64, 48, NTSC_FILM, FAST) as writer:
        for first in range(0, 40, 16):
            writer.write(frames[first:first + 16])
        if Path("/proc/sys/fs/pipe-max-size").exists() and \
                int(Path("/proc/sys/fs/pipe-max-size").read_text()) >= media.PIPE_BYTES:
            # frames cross into ffmpeg through a 1 MB pipe, not Linux's 64 kB (BENCHMARKS.md)
            assert fcntl.fcntl(writer._process.stdin.fileno(), fcntl.F_GETPIPE_SZ) == media.PIPE_BYTES
    assert writer.frames_written == 40
    info = probe(out)
    assert (info.frame_count, info.frame_rate, info.width, info.height) == (40, NTSC_FILM, 64, 48)
    assert psnr(read_frames(out, 0, 40), frames) > 30


def test_writer_refuses_bad_input_and_cleans_up(tmp_path):
    with pytest.raises(MediaError, match=r"odd\.mp4: 63x48 frames cannot be encoded as yuv420p"):
        VideoWriter(tmp_path / "odd.mp4", 63, 48, NTSC_FILM)
    out = tmp_path / "partial.mp4"
    with pytest.raises(MediaError, match=r"partial\.mp4: expected uint8 rgb24 frames shaped Tx48x64x3"):
        with VideoWriter(out, 64, 48, NTSC_FILM, FAST) as writer:
            writer.write(np.zeros((2, 48, 64, 3), np.uint8))
            writer.write(np.zeros((2, 48, 60, 3), np.uint8))
    assert not out.exists()


def test_concat_is_frame_exact_and_keeps_audio_and_subtitles(film, tmp_path):
    frames = read_frames(film, 0, 40)
    cuts = [0, 7, 23, 40]
    clips = [
        write_video(tmp_path / f"clip{i}.mp4", frames[start:end], NTSC_FILM, FAST)
        for i, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False))
    ]
    out = concat_clips(clips, tmp_path / "joined.mkv", streams_from=film)

    info = probe(out)
    assert info.frame_count == 40
    assert info.frame_rate == NTSC_FILM
    assert info.has_audio and info.has_subtitles
    expected = np.concatenate([read_frames(clip, 0, probe(clip).frame_count) for clip in clips])
    np.testing.assert_array_equal(read_frames(out, 0, 40), expected)


def test_concat_into_mp4_converts_text_subtitles(film, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", read_frames(film, 0, 40), NTSC_FILM, FAST)
    info = probe(concat_clips([clip], tmp_path / "joined.mp4", streams_from=film))
    assert info.frame_count == 40 and info.has_audio and info.has_subtitles


def test_concat_without_a_source_and_missing_clips(film, tmp_path):
    clip = write_video(tmp_path / "only.mp4", read_frames(film, 0, 5), NTSC_FILM, FAST)
    info = probe(concat_clips([clip, clip], tmp_path / "twice.mp4"))
    assert info.frame_count == 10 and not info.has_audio
    with pytest.raises(MediaError, match=r"twice2\.mp4: clip .*gone\.mp4 does not exist"):
        concat_clips([clip, tmp_path / "gone.mp4"], tmp_path / "twice2.mp4")


def test_frames_with_a_preview_come_from_one_decode_and_match_reading_each(tmp_path):
    """The faces stage's read: full-size frames as read_frames gives them, and the same frames shrunk
    to a longest side of 64 as a decode at that size gives them, in BGR (the detector's order)."""
    from pipeline.media import read_frames_with_preview

    path = make_video(tmp_path / "clip.mp4", 20, size="160x96")
    full, small, scale = read_frames_with_preview(path, 5, 15, 64)
    assert scale == pytest.approx(64 / 160)
    np.testing.assert_array_equal(full, read_frames(path, 5, 15))
    np.testing.assert_array_equal(small, read_frames(path, 5, 15, width=64, height=38, bgr=True))
    rgb = read_frames(path, 5, 15, width=64, height=38)
    assert np.abs(small[..., ::-1].astype(int) - rgb).mean() < 3  # the same picture, channels swapped
    same, same_small, one = read_frames_with_preview(path, 0, 3, 0)
    assert one == 1.0 and same.shape == (3, 96, 160, 3)
    np.testing.assert_array_equal(same_small, same[..., ::-1])


def test_pictures_with_a_preview_are_the_decoded_i420_pictures_and_the_shrunk_rgb(tmp_path):
    """The faces stage's read of even-sized clips: the I420 pictures as decoded (what paste and encode
    read) with their colour, and the frames shrunk for the detector exactly as read_frames_with_preview
    shrinks them (BGR); no shrinking asked: BGR frames at the source size."""
    from pipeline.media import (
        I420Converter,
        iter_frames,
        read_frames_with_preview,
        read_pictures_with_preview,
    )

    path = make_video(tmp_path / "clip.mp4", 20, size="160x96")
    pictures, colour, small, scale = read_pictures_with_preview(path, 5, 15, 64)
    decoded = I420Converter()
    (first, expected), = iter_frames(path, 5, 15, batch=10, convert=decoded)
    assert first == 5 and pictures.shape == (10, 144, 160) and colour == decoded.colour
    np.testing.assert_array_equal(pictures, expected)
    _, preview_small, preview_scale = read_frames_with_preview(path, 5, 15, 64)
    assert scale == preview_scale == pytest.approx(64 / 160)
    np.testing.assert_array_equal(small, preview_small)
    _, _, unshrunk, one = read_pictures_with_preview(path, 0, 3, 0)
    assert one == 1.0
    np.testing.assert_array_equal(unshrunk, read_frames(path, 0, 3, bgr=True))
    np.testing.assert_array_equal(unshrunk[..., ::-1], read_frames(path, 0, 3))
    odd = make_video(tmp_path / "odd.mp4", 4, size="161x97", pix_fmt="yuv444p")
    with pytest.raises(MediaError, match="odd size"):
        read_pictures_with_preview(odd, 0, 2, 64)


def test_an_avi_whose_packets_carry_no_presentation_times_is_probed_and_decoded(tmp_path):
    """MPEG-4 Part 2 with B-frames in AVI: ffmpeg gives no pts for some packets (their decode times
    stand in), which once made the frame rate 1/0."""
    from pipeline.media import ffmpeg_exe

    path = tmp_path / "packed.avi"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-frames:v", "30", "-c:v", "mpeg4", "-bf", "2", str(path)], check=True)  # fmt: skip
    info = probe(path)
    assert (info.frame_count, info.frame_rate) == (30, Fraction(25))
    assert read_frames(path, 0, 30).shape == (30, 120, 160, 3)
    assert sum(len(frames) for _, frames in iter_frames(path, 10, 30, batch=8)) == 20


def ffmpeg_decoded_count(path: Path) -> int:
    """Frames the ffmpeg command line decodes from the first video stream, each once (no rate conversion)."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
               "-fps_mode", "passthrough", "-f", "framecrc", "-"]  # fmt: skip
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    return sum(1 for line in lines if line and not line.startswith("#"))


def edit_listed(folder: Path) -> Path:
    """An MP4 cut by stream copy at 0.7 s: it keeps the frames from the keyframe at 0.48 s, which its edit
    list hides."""
    gops = make_video(folder / "gops.mp4", 60, size="128x96", gop=12, b_frames=2)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-ss", "0.7",
                    "-i", str(gops), "-c", "copy", str(folder / "cut.mp4")], check=True)  # fmt: skip
    return folder / "cut.mp4"


def variable_rate(folder: Path) -> Path:
    from bad_inputs import phone_video

    return phone_video(make_video(folder / "source.mp4", 20, size="128x192", rate="20"), folder / "phone.mp4")


def avi_without_pts(folder: Path) -> Path:
    path = folder / "packed.avi"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-frames:v", "30", "-c:v", "mpeg4", "-bf", "2", str(path)], check=True)  # fmt: skip
    return path


def live_matroska(folder: Path) -> Path:
    """Matroska written to a pipe, as a live recorder writes it: its segment's size is unknown."""
    path = folder / "live.mkv"
    with path.open("wb") as out:
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                        "-frames:v", "45", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
                        "-f", "matroska", "-"], stdout=out, check=True)  # fmt: skip
    return path


def mpeg_ts(folder: Path) -> Path:
    return make_video(folder / "gops.ts", 50, size="128x96", gop=12, b_frames=2)


TRICKY = {"edit_listed": edit_listed, "variable_rate": variable_rate, "avi_without_pts": avi_without_pts,
          "live_matroska": live_matroska, "mpeg_ts": mpeg_ts}  # fmt: skip


@pytest.mark.parametrize("kind", TRICKY)
def test_probe_counts_the_frames_a_full_decode_gives(tmp_path, kind):
    """Probing reads packets, not pictures: its count must be what ffmpeg and our decoders each give."""
    path = TRICKY[kind](tmp_path)
    count = probe(path).frame_count
    assert count == ffmpeg_decoded_count(path) > 0
    assert sum(len(batch) for _, batch in iter_frames(path, batch=16)) == count


def test_probing_and_decoding_read_the_packets_once(film):
    """The probe's demuxing pass is the decoders' frame index: a process that probes a film and then
    decodes it demuxes it once."""
    from pipeline.media import _scan

    _scan.cache_clear()
    info = probe(film)
    read_frames(film, 10, 20)
    calls = _scan.cache_info()
    assert (calls.misses, calls.hits, info.frame_count) == (1, 1, 40)  # the decoder found the probe's pass


def test_a_cut_live_matroska_is_refused_as_truncated(tmp_path):
    """Without a declared segment size, the last cluster's own size says that the file ends inside it."""
    path = live_matroska(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"live\.mkv: truncated: .*Matroska structure runs to \d+"):
        probe(path)


def test_a_file_without_video_says_which_streams_it_holds(tmp_path):
    path = tmp_path / "song.m4a"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", "-f", "lavfi",
                    "-i", "color=red:size=32x32", "-frames:v", "1", "-map", "0", "-map", "1", "-c:a", "aac",
                    "-c:v", "png", "-disposition:v", "attached_pic", str(path)], check=True)  # fmt: skip
    with pytest.raises(MediaError, match=r"song\.m4a: not a video: no video stream \(streams in the file: "
                                         r"1 audio, 1 cover picture\)"):  # fmt: skip
        probe(path)


def test_a_video_whose_packets_hold_noise_is_refused_at_probe(tmp_path):
    """An intact MP4 index over random bytes: every packet is there, none decodes."""
    path = make_video(tmp_path / "noise.mp4", 10)
    data = bytearray(path.read_bytes())
    box = data.index(b"mdat") - 4  # the box's 32-bit size, then its type
    end = box + int.from_bytes(data[box:box + 4], "big")
    data[box + 8:end] = np.random.default_rng(1).integers(0, 256, end - box - 8, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"noise\.mp4: no decodable video: none of its 10 video packets"):
        probe(path)


SMOOTH_COLOURS = "hue=s=0.5,gblur=sigma=3"  # testsrc2's colours, less saturated and blurred: chroma that
# survives 4:2:0 subsampling, so that converting to RGB and back is exact up to rounding


def decode_i420(path: Path) -> tuple[np.ndarray, Colour]:
    convert = I420Converter()
    pictures = np.concatenate([pictures for _, pictures in iter_frames(path, batch=2, convert=convert)])
    return pictures, convert.colour


def mean_plane_differences(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Mean absolute difference of the Y, U and V planes of two stacks of I420 pictures."""
    planes_a, planes_b = ([np.stack(plane) for plane in zip(*map(i420_planes, stack), strict=True)]
                          for stack in (a, b))  # fmt: skip
    return [float(np.abs(pa.astype(int) - pb).mean()) for pa, pb in zip(planes_a, planes_b, strict=True)]


@pytest.mark.parametrize(
    "tags, expected",
    [((), Colour("yuv420p", 2, 0)),  # untagged: BT.601, limited range
     (("-colorspace", "bt709", "-color_range", "tv"), Colour("yuv420p", 1, 1)),
     (("-colorspace", "bt470bg", "-color_range", "pc"), Colour("yuvj420p", 5, 2))],
    ids=["bt601", "bt709", "bt601-full-range"],
)  # fmt: skip
def test_decoded_i420_pictures_go_to_rgb_and_back_with_the_source_matrix_and_range(tmp_path, tags, expected):
    path = make_video(tmp_path / "colours.mp4", 5, rate="25", size="128x96", source="testsrc2",
                      filters=SMOOTH_COLOURS, colour=tags)  # fmt: skip
    pictures, colour = decode_i420(path)
    assert pictures.shape == (5, 144, 128) and colour[:3] == expected[:3]
    np.testing.assert_array_equal(pictures, ffmpeg_decode(path, 128, 96, colour.pix_fmt))  # as decoded

    back = np.stack([rgb_to_i420(i420_to_rgb(picture, colour), colour) for picture in pictures])
    y, u, v = mean_plane_differences(back, pictures)
    print(f"\n{colour}: round trip differs by {y:.3f}/{u:.3f}/{v:.3f}")
    assert y < 0.01 and u < 1 and v < 1
    other_matrix = colour._replace(colorspace=5 if colour.colorspace == 1 else 1)
    other_range = colour._replace(pix_fmt="yuv420p" if colour.pix_fmt == "yuvj420p" else "yuvj420p")
    for wrong in (other_matrix, other_range):
        back = np.stack([rgb_to_i420(i420_to_rgb(picture, colour), wrong) for picture in pictures])
        differences = mean_plane_differences(back, pictures)  # 6-8 levels of luma measured
        assert max(differences) > 1.5, (wrong, differences)


def test_decoded_i420_pictures_of_a_rotated_video_are_upright(tmp_path):
    path = make_video(tmp_path / "portrait.mp4", 3, size="128x96", source="testsrc2", filters=SMOOTH_COLOURS,
                      rotation=90)  # fmt: skip
    pictures, colour = decode_i420(path)
    assert pictures.shape == (3, 128 * 3 // 2, 96)
    np.testing.assert_array_equal(pictures, ffmpeg_decode(path, 96, 128, "yuv420p"))
    rgb = np.stack([i420_to_rgb(picture, colour) for picture in pictures])
    assert np.abs(rgb.astype(int) - read_frames(path, 0, 3)).mean() < 3  # the decoders' RGB, upright


def test_other_pixel_formats_are_decoded_to_i420_upright(tmp_path):
    path = make_video(tmp_path / "deep.mp4", 3, size="128x96", source="testsrc2", filters=SMOOTH_COLOURS,
                      pix_fmt="yuv422p10le", rotation=270)  # fmt: skip
    pictures, colour = decode_i420(path)
    assert pictures.shape == (3, 128 * 3 // 2, 96) and colour.pix_fmt == "yuv420p"
    assert max(mean_plane_differences(pictures, ffmpeg_decode(path, 96, 128, "yuv420p"))) < 1
    with pytest.raises(ValueError, match="C-contiguous"):
        i420_planes(pictures[0][:, :64])


BT709 = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709")


@pytest.mark.parametrize("tags", [BT709, ("-color_range", "pc")], ids=["bt709", "full-range"])
def test_the_writer_encodes_i420_pictures_as_decoded_and_tags_their_colour(tmp_path, tags):
    source = make_video(tmp_path / "source.mp4", 5, rate="25", size="128x96", source="testsrc2",
                        filters=SMOOTH_COLOURS, colour=tags)  # fmt: skip
    pictures, colour = decode_i420(source)
    out = tmp_path / "out.mp4"
    lossless = EncodeSettings(preset="ultrafast", crf=0)
    with VideoWriter(out, 128, 96, Fraction(25), lossless, colour.pix_fmt, colour) as writer:
        writer.write(pictures[:2])
        writer.write(pictures[2])  # one picture
        writer.write(pictures[3:])
    written, written_colour = decode_i420(out)
    np.testing.assert_array_equal(written, pictures)
    assert written_colour[:3] == colour[:3]
    with pytest.raises(MediaError, match=r"bad\.mp4: expected uint8 yuv\w*420p frames shaped Tx144x128"):
        with VideoWriter(tmp_path / "bad.mp4", 128, 96, Fraction(25), lossless, colour.pix_fmt) as writer:
            writer.write(np.zeros((1, 96, 128, 3), np.uint8))
