"""Video files in and out: probe and decode (PyAV), encode and concat/mux (ffmpeg).

`probe` reads the container's header through PyAV (streams, codec, size, pixel format) and demuxes
the video stream once, decoding only its first frame (for the display rotation): the packets'
timestamps and durations give an exact frame count and an exact rational frame rate (24000/1001, not
23.98). That pass is also the per-process index of frame times that decoding uses (below), so a
process that probes a video and then decodes it reads its packets once. It replaced one
`ffmpeg -f framecrc` pass whose log was parsed, and costs less (BENCHMARKS.md, issue 12: 38-40
core-ms for a 960-frame 1080p film against 51-58, and 39 against 67-74 with the decoders' index).
A file that ends inside its video data (a cut-short copy) is refused as truncated rather than
described by the frames that happen to be there, from the container's own structure: its index
(MP4's sample table) lists packets past the file's end, the file is shorter than its Matroska
elements' sizes say, or an MP4 lacks its index (the moov box, written last). Other causes are told
from the file's first bytes (empty, text) and its streams (audio only), never from libav's log.

Variable frame rate (phones): every frame is kept and decoded once, but the pipeline writes constant
rate video, so such a source is described, and its output written, at its mean rate
frame_count / duration; the output lasts as long as the source, its frame times evened out.

Frames are RGB uint8 arrays shaped TxHxWx3 in display orientation: decoding applies a frame's
rotation side data (90, 180, 270 degrees) as ffmpeg does, so `VideoInfo.width`/`height` are those of
decoded frames. Frame i is the i-th frame in presentation order, as ffmpeg numbers them: decoding
from frame 0 counts the frames the decoder gives; a range that starts later seeks to the last
keyframe shown at or before its start and places frames by their presentation times, from a
per-process cache of each video's packet times (one demuxing pass, nothing decoded).

Paste and encode read I420 pictures instead (`iter_frames(convert=I420Converter())`: each frame one
(H*3/2)xW uint8 array, Y then U then V, upright): 4:2:0 pictures as decoded, which the writer feeds to
ffmpeg as raw yuv420p, so that pixels outside the faces reach the encoder unchanged, in the source's
matrix and range, and the output is tagged with the source's colour (`Colour`). Only restored faces
are converted, from RGB with the source's matrix (`rgb_to_i420`). The RGB round trip this replaces
converted back with BT.601 whatever the source's matrix: on a BT.709 1080p test film at crf 0 its
output's planes differed from the source's by 13.3/7.3/9.6 levels on average (Y/U/V, a shot without
faces), now by 0. Measured on a 2-core machine (CPU time per 1080p frame): decoding costs 4.3 core-ms
as I420 against 7.3 as RGB, ffmpeg at veryfast 20.5 fed yuv420p against 26.9 fed rgb24 (its own RGB
conversion), and the paste + encode stage 47-50 against 53-61 on the cost film (BENCHMARKS.md).

How frames flow through a run (each node decodes from its own copy of the source; decoded frames are
never moved between processes, which costs more than decoding again: BENCHMARKS.md): scene analysis
decodes each frame once, straight to 256 wide in BGR; the faces stage decodes each frame of a clip
once at full size for the crops and, from the same decoded picture, a BGR copy shrunk to
faces.detect_max_side for the detector (`read_pictures_with_preview`; swscale's BGR path shrinks for
less than its RGB one, see _RGBConverter); paste and encode decode it at full size once more.
So a full-size frame is decoded twice per run, and the detector reads a reduced-size decode. Frames of
even sizes stay I420 as decoded in both stages: the faces stage cuts crops from the planes
(pipeline.faces.warp_face_i420) and paste blends faces into them, so no full-size frame is ever
converted to RGB (odd sizes, and faces.mode=aligned, go through RGB: `read_frames_with_preview`).

Why PyAV and not decord: every frame of a film is decoded at full size twice per run (faces, then
paste and encode) and once small (scene analysis). Measured on a 2-core machine on a 1080p H.264
clip (CPU time of all threads per frame): iterating full-size frames costs 4.1-5.0 core-ms with
PyAV against 8.0-9.3 with decord (6.4-7.2 against 8.5-12.6 as a fresh process's first call, 48
frames from mid-file 7.6-7.8 against 10.9-11.3); decoding straight to 256x144 costs 3.4-3.9 against
3.7-4.2.
"""
from __future__ import annotations

import codecs
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline import scratch
from pipeline.config import EncodeSettings

FFMPEG_ENV = "DPT_FFMPEG"
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")
STANDARD_RATES = tuple(
    Fraction(rate)
    for rate in ("24000/1001", "24", "25", "30000/1001", "30", "48000/1001", "48", "50",
                 "60000/1001", "60", "100", "120000/1001", "120", "15", "12", "20", "10")
)

# First bytes of a Matroska/WebM file (EBML header) and the id of its Segment, whose declared size says
# where the file should end.
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
MATROSKA_SEGMENT = b"\x18\x53\x80\x67"
# libav error codes (PyAV's `FFmpegError.errno`) in plain words.
AV_ERRORS = {
    1094995529: "invalid data: the file is corrupt or truncated",  # AVERROR_INVALIDDATA
    541478725: "unexpected end of file: the file is truncated",  # AVERROR_EOF
    13: "permission denied: this process may not read the file; give the run's user read access",  # EACCES
}
# Frame threads per decoder. Core-ms per 1080p frame measured alike for 1, 2 and 3 threads; 2 gives
# most of the wall-time gain, where libav's automatic count (cores + 1, up to 16) would start that
# many threads in every decoding actor on a large node.
DECODE_THREADS = 2
SCALE_INTERPOLATION = "AREA"  # decoding to a smaller size averages source pixels (no aliasing)
FRAME_INDEX_CACHE_SIZE = 16  # videos whose frame positions a process keeps


class MediaError(RuntimeError):
    """A video could not be probed, decoded, encoded or joined; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video file before decoding it.

    Attributes:
        path: the file probed.
        width, height: size in pixels of decoded frames (display orientation, rotation applied).
        frame_rate: exact frames per second as a fraction (Fraction(24000, 1001)); for a variable
            frame rate, the mean rate frame_count / duration, snapped to a standard rate within 0.1%.
        frame_count: number of video frames (packets of the first video stream that is not cover art,
            less those an edit list discards), the frames read_frames and iter_frames number.
        duration_s: frame_count / frame_rate in seconds.
        rotation: counterclockwise display rotation from the stream's side data (0, 90, 180, 270), as
            its first decoded frame carries it.
        codec: video codec name ("h264").
        pix_fmt: source pixel format ("yuv420p", "yuv420p10le").
        bit_depth: bits per sample of pix_fmt (8, 10, 12, 16).
        audio_streams, subtitle_streams: how many of each the container holds.
        variable_frame_rate: the intervals between frame times differ by more than timestamp rounding.
    """

    path: str
    width: int
    height: int
    frame_rate: Fraction
    frame_count: int
    duration_s: float
    rotation: int
    codec: str
    pix_fmt: str
    bit_depth: int
    audio_streams: int
    subtitle_streams: int
    variable_frame_rate: bool = False

    @property
    def has_audio(self) -> bool:
        return self.audio_streams > 0

    @property
    def has_subtitles(self) -> bool:
        return self.subtitle_streams > 0


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $DPT_FFMPEG, else `ffmpeg` on PATH, else imageio-ffmpeg's bundled one."""
    configured = os.environ.get(FFMPEG_ENV)
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            raise MediaError(f"${FFMPEG_ENV}={configured!r} is not an executable file; fix or unset it")
        return configured
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise MediaError(
            f"no ffmpeg found: set ${FFMPEG_ENV}, put ffmpeg on PATH or install imageio-ffmpeg ({error})"
        ) from None


def probe(path: str | Path) -> VideoInfo:
    """Describe a video file from its container's header and one demuxing pass over its video packets
    (PyAV), decoding only its first frame, for the display rotation.

    The pass is the one decoding needs anyway (the per-process frame index): probing a video and then
    decoding it in the same process demuxes it once.

    Raises:
        MediaError: the file is missing, unreadable, empty, not a video (text, audio only, unknown
            data) or truncated; the message names the file and the cause in plain words.
    """
    path = Path(path)
    _read_head(path)
    return _scanned(path).info


def read_frames(
    path: str | Path, start: int, end: int, width: int = 0, height: int = 0, bgr: bool = False
) -> np.ndarray:
    """Decode frames [start, end) of a video.

    Args:
        width, height: decode straight to this size (both > 0), or keep the source size (0, 0).
        bgr: BGR channel order instead of RGB.

    Returns:
        TxHxWx3 uint8 RGB (or BGR) frames, T = end - start.
    """
    index = _checked_frame_index(path, width, height)
    _check_range(path, start, end, index.frame_count)
    if start == end:
        if not width:
            with closing(_decoded_frames(path, index, 0, 1, 0, 0)) as frames:
                height, width = next(frames).shape[:2]
        return np.zeros((0, height, width, 3), np.uint8)
    convert = _RGBConverter(width, height, bgr=bgr)
    with closing(_decoded_frames(path, index, start, end, width, height, convert=convert)) as frames:
        return _take(frames, end - start, path, start)


def iter_frames(
    path: str | Path, start: int = 0, end: int | None = None, batch: int = 32, width: int = 0,
    height: int = 0, convert: I420Converter | None = None, bgr: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """Decode frames [start, end) in order, batch by batch, without holding the whole range.

    Args:
        convert: what each decoded frame becomes instead of RGB (an I420Converter: Bx(H*3/2)xW I420
            pictures as decoded); width, height and bgr are then not used.
        bgr: BGR channel order instead of RGB (what OpenCV and PySceneDetect take; no copy to flip).

    Yields:
        (index of the batch's first frame, BxHxWx3 uint8 RGB (or BGR) frames, or what `convert` makes).
    """
    index = _checked_frame_index(path, width, height)
    end = index.frame_count if end is None else end
    _check_range(path, start, end, index.frame_count)
    convert = convert or _RGBConverter(width, height, bgr=bgr)
    with closing(_decoded_frames(path, index, start, end, width, height, convert=convert)) as frames:
        for first in range(start, end, batch):
            yield first, _take(frames, min(batch, end - first), path, first, convert)


I420_FORMATS = ("yuv420p", "yuvj420p")  # decoded pictures taken as they are (yuvj: full range)
WRITER_INPUTS = ("rgb24", *I420_FORMATS)
# A frame's AVColorSpace -> the matrix swscale converts with (PyAV's Colorspace names); others: BT.601.
SWS_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
FULL_RANGE = 2  # AVCOL_RANGE_JPEG; 1 (MPEG) and 0 (unspecified) mean limited range


class Colour(NamedTuple):
    """How a source's pictures code colour, from its first decoded frame: what the writer tells ffmpeg
    its raw input is, and the matrix and range faces restored in RGB are converted back to I420 with.

    Attributes:
        pix_fmt: "yuvj420p" for full range pictures, else "yuv420p" (the writer's input_format).
        colorspace: the frame's AVColorSpace (1 BT.709, 5 and 6 BT.601, 2 unspecified: BT.601).
        color_range: the frame's AVColorRange (2 full, 1 limited, 0 unspecified: limited).
        primaries, trc: the frame's AVColorPrimaries and AVColorTransferCharacteristic (2: unspecified),
            only copied onto the output.
    """

    pix_fmt: str
    colorspace: int
    color_range: int
    primaries: int = 2
    trc: int = 2

    def ffmpeg_input_args(self) -> list[str]:
        """ffmpeg options that describe raw pictures of this colour (those the source specifies), so that
        the output is tagged as the source is and players show its colours as the source's."""
        # option: (value, its unspecified code); 3 is reserved in the other three enumerations
        tags = {"-colorspace": (self.colorspace, 2), "-color_range": (self.color_range, 0),
                "-color_primaries": (self.primaries, 2), "-color_trc": (self.trc, 2)}
        return [arg for option, (value, unspecified) in tags.items() if value not in (unspecified, 3)
                for arg in (option, str(value))]  # fmt: skip

    @property
    def matrix(self) -> str:
        return SWS_MATRICES.get(self.colorspace, "DEFAULT")

    @property
    def range(self) -> str:
        return "JPEG" if self.pix_fmt == "yuvj420p" else "MPEG"


# AVColorSpace -> (Kr, Kb) of its Y'CbCr matrix; any other (2, unspecified) is BT.601, as swscale takes it.
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087), 9: (0.2627, 0.0593),
                10: (0.2627, 0.0593)}  # fmt: skip
BT601 = (0.299, 0.114)


@functools.lru_cache(maxsize=16)
def yuv_to_rgb_matrix(colour: Colour) -> np.ndarray:
    """The 3x4 float32 matrix taking (Y, U, V, 1) to (R, G, B) in the colour's matrix and range, for
    cv2.transform of HxWx3 YUV (4:4:4) images (rounded to nearest, saturated)."""
    kr, kb = LUMA_WEIGHTS.get(colour.colorspace, BT601)
    kg = 1.0 - kr - kb
    full = colour.pix_fmt == "yuvj420p"
    y_scale, y_offset, c_scale = (1.0, 0.0, 1.0) if full else (255 / 219, 16.0, 255 / 224)
    # R = Y' + 2(1-Kr) Cr;  B = Y' + 2(1-Kb) Cb;  G = Y' - (2 Kb (1-Kb) Cb + 2 Kr (1-Kr) Cr) / Kg
    u_weights = np.array([0.0, -2 * kb * (1 - kb) / kg, 2 * (1 - kb)]) * c_scale
    v_weights = np.array([2 * (1 - kr), -2 * kr * (1 - kr) / kg, 0.0]) * c_scale
    y_weights = np.full(3, y_scale)
    offsets = -y_weights * y_offset - (u_weights + v_weights) * 128
    return np.column_stack([y_weights, u_weights, v_weights, offsets]).astype(np.float32)


@functools.lru_cache(maxsize=16)
def rgb_to_yuv_matrix(colour: Colour) -> np.ndarray:
    """The 3x4 float32 matrix taking (R, G, B, 1) to (Y, U, V): the inverse of yuv_to_rgb_matrix."""
    square = np.vstack([yuv_to_rgb_matrix(colour).astype(np.float64), [0, 0, 0, 1]])
    return np.linalg.inv(square)[:3].astype(np.float32)


class I420Converter:
    """Decoded frames to one (H*3/2)xW uint8 I420 picture each (the Y plane, then U, then V, each
    row-contiguous), turned by their display rotation plane by plane.

    4:2:0 8-bit pictures are copied as decoded, so that pasting and encoding them changes no pixel
    outside the faces and spends no time on RGB; other formats (10-bit, 4:2:2, 4:4:4) are converted to
    yuv420p keeping their matrix and range. `colour` is read from the first frame."""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self.colour: Colour | None = None
        # where the next picture is written, when its shape fits (set by whoever stacks the pictures,
        # so that each is copied once, from the decoder's planes into its place); else a new array
        self.into: np.ndarray | None = None
        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        if self.colour is None:
            full = frame.color_range == FULL_RANGE or frame.format.name == "yuvj420p"
            pix_fmt = "yuvj420p" if full else "yuv420p"
            self.colour = Colour(pix_fmt, int(frame.colorspace), int(frame.color_range),
                                 int(frame.color_primaries), int(frame.color_trc))  # fmt: skip
        quarter_turns = round(frame.rotation / 90) % 4  # counterclockwise
        if frame.format.name not in I420_FORMATS:
            frame = self._reformatter.reformat(frame, format="yuv420p", threads=1)
        width, height = frame.width, frame.height
        if width % 2 or height % 2:
            raise MediaError(f"{width}x{height} frames have no I420 layout (odd size): decode them to RGB")
        into, self.into = self.into, None
        shape = (height * 3 // 2, width)
        fits = into is not None and not quarter_turns and into.shape == shape and into.flags.c_contiguous
        picture = into if fits else np.empty(shape, np.uint8)
        for plane, out in zip(frame.planes, i420_planes(picture), strict=True):
            stride = plane.line_size  # bytes per row, padding included
            rows = np.frombuffer(plane, np.uint8)[: stride * len(out)].reshape(-1, stride)
            out[...] = rows[:, : out.shape[1]]
        if not quarter_turns:
            return picture
        import cv2

        turn = (cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)[quarter_turns - 1]
        planes = [cv2.rotate(plane, turn) for plane in i420_planes(picture)]
        return np.concatenate([plane.reshape(-1) for plane in planes]).reshape(-1, planes[0].shape[1])


def i420_planes(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (HxW), U and V (H/2 x W/2) planes of a contiguous (H*3/2)xW I420 picture."""
    if not picture.flags.c_contiguous:  # reshaping would copy, and writes to the planes would be lost
        raise ValueError(f"the I420 picture is not C-contiguous (strides {picture.strides}): copy it first")
    height, width = picture.shape[0] * 2 // 3, picture.shape[1]
    flat = picture.reshape(-1)
    quarter = height * width // 4
    y = flat[: height * width].reshape(height, width)
    u = flat[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter : height * width + 2 * quarter].reshape(height // 2, width // 2)
    return y, u, v


def rgb_to_i420(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """An HxWx3 uint8 RGB image (even sizes) as an (H*3/2)xW I420 picture coded like the source
    (its matrix and range), so that it can be blended into the source's decoded pictures."""
    import av
    from av.video.reformatter import Interpolation

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    # accurate rounding (i420_to_rgb's Y comes back exactly); area: each chroma sample averages its 2x2
    accurate = Interpolation.AREA | Interpolation.ACCURATE_RND
    return frame.reformat(format="yuv420p", dst_colorspace=colour.matrix, dst_color_range=colour.range,
                          interpolation=accurate, threads=1).to_ndarray()  # fmt: skip


def i420_to_rgb(picture: np.ndarray, colour: Colour) -> np.ndarray:
    """An (H*3/2)xW I420 picture coded as `colour` says, as HxWx3 uint8 RGB, converted exactly
    (accurate rounding, chroma interpolated): rgb_to_i420 gives its Y plane back unchanged. The
    decoders' RGB (read_frames) takes swscale's fast path, whose luma is a level or two darker."""
    import av
    from av.video.reformatter import Interpolation

    exact = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="yuv420p")
    return frame.reformat(format="rgb24", src_colorspace=colour.matrix, src_color_range=colour.range,
                          interpolation=exact, threads=1).to_ndarray()  # fmt: skip


class VideoWriter:
    """Encodes frames fed in batches into one video file through an ffmpeg pipe.

    Use as a context manager; on an exception inside the block the partial file is removed.

        with VideoWriter("clip.mp4", width, height, Fraction(24000, 1001)) as writer:
            writer.write(frames)  # TxHxWx3 uint8 RGB

    Args:
        path: output file; the container follows its extension (.mp4, .mkv).
        width, height: frame size; yuv420p/yuv422p need both even.
        frame_rate: exact output rate, e.g. VideoInfo.frame_rate.
        encode: codec, crf, preset and pixel format.
        input_format: what `write` is given: "rgb24" (TxHxWx3), or I420 pictures (Tx(H*3/2)xW) as an
            I420Converter decodes them, "yuv420p" or "yuvj420p" (full range) as its colour says; with
            encode.pix_fmt yuv420p, I420 pictures reach the encoder unconverted.
        colour: the I420 pictures' Colour (I420Converter.colour): the output is tagged with its matrix,
            range, primaries and transfer. RGB input is converted with BT.601 and left untagged.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        frame_rate: Fraction,
        encode: EncodeSettings | None = None,
        input_format: str = "rgb24",
        colour: Colour | None = None,
    ) -> None:
        encode = encode or EncodeSettings()
        self.path = Path(path)
        self.width, self.height, self.input_format = width, height, input_format
        self.frame_shape = (height, width, 3) if input_format == "rgb24" else (height * 3 // 2, width)
        self.frames_written = 0
        if width <= 0 or height <= 0:
            raise MediaError(f"{self.path}: frame size {width}x{height} must be positive")
        if input_format not in WRITER_INPUTS:
            raise MediaError(f"{self.path}: input_format {input_format!r} is not one of "
                             f"{', '.join(WRITER_INPUTS)}")  # fmt: skip
        if input_format != "rgb24" and (width % 2 or height % 2):
            raise MediaError(f"{self.path}: {width}x{height} frames have no {input_format} layout "
                             "(odd size); write them as rgb24")  # fmt: skip
        if encode.pix_fmt.startswith(("yuv420", "yuv422")) and (width % 2 or height % 2):
            raise MediaError(
                f"{self.path}: {width}x{height} frames cannot be encoded as {encode.pix_fmt} (odd size); "
                "crop or pad to even dimensions, or set encode.pix_fmt=yuv444p"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from pipeline.encoders import encoder_args

        rate = Fraction(frame_rate)
        command = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", input_format, "-s", f"{width}x{height}",
            "-framerate", f"{rate.numerator}/{rate.denominator}",
            *(colour.ffmpeg_input_args() if colour and input_format != "rgb24" else []), "-i", "pipe:0",
            "-an", *encoder_args(encode),
            "-pix_fmt", encode.pix_fmt, str(self.path),
        ]
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._stderr)
        _widen_pipe(self._process.stdin)

    def write(self, frames: np.ndarray) -> None:
        """Append frames of the writer's size and input_format: TxHxWx3 (or one HxWx3) uint8 RGB, or
        Tx(H*3/2)xW (or one) I420 pictures."""
        frames = np.asarray(frames)
        if frames.ndim == len(self.frame_shape):
            frames = frames[None]
        if frames.shape[1:] != self.frame_shape or frames.dtype != np.uint8:
            raise MediaError(
                f"{self.path}: expected uint8 {self.input_format} frames shaped "
                f"T{''.join(f'x{side}' for side in self.frame_shape)}, got {frames.dtype} {frames.shape}"
            )
        try:
            # the array's own buffer: no 6 MB copy per 1080p frame on the way into the pipe
            self._process.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
        except (BrokenPipeError, ValueError):
            self._process.wait()
            raise MediaError(f"{self.path}: ffmpeg stopped while encoding: {self._errors()}") from None
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the file; raises MediaError when ffmpeg failed."""
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        if self._process.wait() != 0:
            raise MediaError(f"{self.path}: ffmpeg failed to encode: {self._errors()}")
        self._stderr.close()

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file."""
        self._process.kill()
        self._process.wait()
        self._stderr.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.close()
        else:
            self.abort()

    def _errors(self) -> str:
        self._stderr.seek(0)
        return _last_lines(self._stderr.read().decode(errors="replace"))


PIPE_BYTES = 1 << 20


def _widen_pipe(pipe) -> None:
    """Give the pipe into ffmpeg 1 MB instead of Linux's 64 kB: a 1080p frame (3 MB as I420) then
    crosses in 3 writes and reads instead of 48, which measured 1.64 -> 1.39 core-ms per frame (medians)
    for the writer and ffmpeg's reader together (5 of 5 alternating pairs, BENCHMARKS.md). Where the
    system caps pipes lower (/proc/sys/fs/pipe-max-size) or is not Linux, the default pipe stays."""
    try:
        import fcntl  # POSIX only; F_SETPIPE_SZ is Linux's

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def write_video(
    path: str | Path, frames: np.ndarray, frame_rate: Fraction, encode: EncodeSettings | None = None
) -> Path:
    """Encode TxHxWx3 uint8 RGB frames into one file; returns its path."""
    _, height, width, _ = frames.shape
    with VideoWriter(path, width, height, frame_rate, encode) as writer:
        writer.write(frames)
    return Path(path)


def concat_clips(
    clips: Sequence[str | Path], output: str | Path, streams_from: str | Path | None = None
) -> Path:
    """Join clip files end to end without re-encoding, adding the audio and subtitles of a source.

    The clips must share codec, size and frame rate (as VideoWriter makes them with one
    EncodeSettings); they are joined by stream copy, so every frame is kept exactly once.
    Audio and subtitle streams of `streams_from` (if it has any) are copied unchanged, except that
    text subtitles become mov_text in an .mp4/.mov (the only kind MP4 holds); bitmap subtitles
    (DVD, PGS) need an .mkv output.

    Returns:
        the output path.
    """
    output = Path(output)
    if not clips:
        raise MediaError(f"{output}: no clips to join")
    for clip in clips:
        if not Path(clip).is_file():
            raise MediaError(f"{output}: clip {clip} does not exist")
    if streams_from is not None and not Path(streams_from).is_file():
        raise MediaError(f"{output}: source {streams_from} to copy audio/subtitles from does not exist")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=output.parent, delete=False) as listing:
        listing.writelines(f"file '{_concat_quote(Path(clip).resolve())}'\n" for clip in clips)
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "concat", "-safe", "0", "-i", listing.name]
    if streams_from is not None:
        command += ["-i", str(streams_from), "-map", "0:v:0", "-map", "1:a?", "-map", "1:s?",
                    "-map_metadata", "1"]
    command += ["-c", "copy"]
    if streams_from is not None and output.suffix.lower() in MP4_SUFFIXES:
        command += ["-c:s", "mov_text"]  # MP4 holds only mov_text; text subtitles (srt, ass) convert
    command.append(str(output))
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    finally:
        Path(listing.name).unlink(missing_ok=True)
    if result.returncode != 0:
        output.unlink(missing_ok=True)
        raise MediaError(f"{output}: ffmpeg could not join {len(clips)} clips: {_last_lines(result.stderr)}")
    return output


@dataclass(frozen=True)
class _FrameIndex:
    """Where the frames of a video stream lie, from one demuxing pass (nothing decoded).

    Attributes:
        frame_count: video packets, as probe counts them (packets an edit list discards excluded).
        pts: sorted presentation times (stream time base): frame i is shown at pts[i]; None when a packet
            has none or two share one, and frames are then numbered by counting from the first.
        keyframe_pts: sorted presentation times of the keyframes, where decoding can start after a seek.
    """

    frame_count: int
    pts: np.ndarray | None
    keyframe_pts: np.ndarray


@dataclass(frozen=True)
class _Scan:
    """A video's probe and its frame index, both from one demuxing pass."""

    info: VideoInfo
    index: _FrameIndex


class _SeekMissed(Exception):
    """Decoding after a seek did not lead to the wanted frame by its timestamp."""


def _checked_frame_index(path: str | Path, width: int, height: int) -> _FrameIndex:
    if not Path(path).is_file():
        raise MediaError(f"{path}: video file not found")
    if (width > 0) != (height > 0):
        raise MediaError(f"{path}: give both width and height to decode at another size, or neither")
    return _scanned(Path(path)).index


def _scanned(path: Path) -> _Scan:
    stat = path.stat()
    return _scan(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=FRAME_INDEX_CACHE_SIZE)
def _scan(path: str, size: int, mtime_ns: int) -> _Scan:
    """Read the header and demux the video stream once, decoding only the first frame (size and mtime_ns
    key the cache, so a rewritten file is read again).

    Packets an edit list discards (before its start: decoded for reference, never shown) are not frames;
    a packet without a presentation time (AVI, raw streams) is timed by its decoding time. Raises
    MediaError for a file that ends before its container says it does: the index (MP4's sample table)
    lists packets after the last one read, or the file is shorter than its Matroska elements say.
    """
    import av

    with _opened_video(path, "reading its video packets") as (container, stream):
        stream.codec_context.thread_count = 1  # one frame to decode: no threads to start
        packets, keyframe_pts, latest, rotation, undecoded = [], [], None, None, None
        for packet in container.demux(stream):
            if packet.size == 0:  # the empty packet that ends the stream
                continue
            for time in (packet.pts, packet.dts):
                if time is not None and (latest is None or time > latest):
                    latest = time
            if rotation is None:
                try:
                    rotation = next((frame.rotation for frame in stream.decode(packet)), None)
                except av.error.InvalidDataError as error:  # a damaged packet: a later one may decode
                    undecoded = error
            if packet.is_discard:
                continue
            time = packet.pts if packet.pts is not None else packet.dts
            packets.append((packet.pts, time, packet.duration or 0))
            if packet.is_keyframe:
                keyframe_pts.append(packet.pts)
        if not packets:
            raise MediaError(f"{path}: the video stream holds no frames")
        if rotation is None:
            rotation = next((frame.rotation for frame in stream.decode(None)), None)  # the decoder's delay
        entries = stream.index_entries
        indexed_end = entries[len(entries) - 1].timestamp if len(entries) else None
        truncation = _truncation(path, size, indexed_end, latest)
        if truncation:
            seconds = (container.duration or 0) / 1e6  # AV_TIME_BASE units
            declared = f"the container declares {seconds:.2f} s; " if seconds else ""
            raise MediaError(f"{path}: truncated: the file ends within its video data, after {len(packets)} "
                             f"frames ({declared}{truncation}); an interrupted copy or recording?")
        if rotation is None:
            cause = _av_cause(undecoded) if undecoded else "the file is corrupt"
            raise MediaError(f"{path}: no decodable video: none of its {len(packets)} video packets decodes "
                             f"to a frame: {cause}")
        info = _stream_info(path, container, stream, [(time, duration) for _, time, duration in packets])
    info = _turned(info, round(rotation) % 360)
    pts = [time for time, _, _ in packets]
    if None in pts or len(set(pts)) < len(pts):
        return _Scan(info, _FrameIndex(len(pts), None, np.zeros(0, np.int64)))
    index = _FrameIndex(len(pts), np.sort(np.array(pts, np.int64)), np.sort(np.array(keyframe_pts, np.int64)))
    return _Scan(info, index)


def _stream_info(path: str, container, stream, packets: list[tuple[int | None, int]]) -> VideoInfo:
    """The VideoInfo of a stream from its codec parameters and its packets' (time, duration), before its
    display rotation is known (rotation 0)."""
    codec = stream.codec_context
    if not codec.width or not codec.height:
        raise MediaError(f"{path}: the video stream declares no frame size; the file is corrupt")
    timed = [(time, duration) for time, duration in packets if time is not None]
    variable = _variable_frame_rate(timed)
    rates = (stream.average_rate, stream.guessed_rate)  # ffmpeg's "fps", then its guess ("tbr")
    header = next((_snap_rate(float(rate)) for rate in rates if rate), None)
    frame_rate = _frame_rate(stream.time_base or Fraction(1), timed, header, path, variable)
    pix_fmt = codec.pix_fmt or "unknown"
    return VideoInfo(
        path=path,
        width=codec.width,
        height=codec.height,
        frame_rate=frame_rate,
        frame_count=len(packets),
        duration_s=float(len(packets) / frame_rate),
        rotation=0,
        codec=codec.codec.canonical_name,
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        audio_streams=len(container.streams.audio),
        subtitle_streams=len(container.streams.subtitles),
        variable_frame_rate=variable,
    )


def _check_range(path: str | Path, start: int, end: int, frame_count: int) -> None:
    if not 0 <= start <= end <= frame_count:
        raise MediaError(f"{path}: frames [{start}, {end}) are outside the video's {frame_count} frames")


def _decoded_frames(
    path: str | Path, index: _FrameIndex, start: int, end: int, width: int, height: int, convert=None
) -> Iterator[np.ndarray]:
    """Frames start..end-1 in order, each HxWx3 uint8 RGB upright (valid until the next is asked for).

    From frame 0, or when timestamps cannot place frames, the decoder runs from the first frame and
    frames are numbered in the order it gives them (as ffmpeg numbers them). Otherwise it seeks to the
    last keyframe shown at or before frame `start` and numbers frames by their presentation times;
    where a demuxer's seek lands past that keyframe (MPEG-TS), it tries earlier keyframes. `convert`
    (default: _RGBConverter at width x height) makes what is yielded of each decoded frame.
    """
    convert = convert or _RGBConverter(width, height)
    if start > 0 and index.pts is not None:
        for keyframe in _keyframes_before(index, start):
            try:
                for frame in _decode_after_seek(path, index, keyframe, start, end, convert):
                    yield frame
                    start += 1
                return
            except _SeekMissed:
                continue
    yield from _decode_from_first(path, start, end, convert)


def _keyframes_before(index: _FrameIndex, start: int) -> Iterator[int]:
    """Positions in index.keyframe_pts to seek to for frame `start`: the last keyframe shown at or before
    it, then ones 1, 3, 7, 15, ... keyframes earlier."""
    last = int(np.searchsorted(index.keyframe_pts, index.pts[start], side="right")) - 1
    back = 0
    while last - back >= 0:
        yield last - back
        back = 2 * back + 1


def _decode_after_seek(
    path: str | Path, index: _FrameIndex, keyframe: int, start: int, end: int, convert: _RGBConverter
) -> Iterator[np.ndarray]:
    """Frames start..end-1 decoded from keyframe index.keyframe_pts[keyframe] on, placed by their pts.

    Raises _SeekMissed, before yielding anything, when the frames decoded after the seek do not lead to
    frame `start` from a keyframe (the seek landed after it or after a keyframe's place), and at any
    point when a frame's pts is not one of the index's.
    """
    wanted, after_keyframe = start, False
    with _opened_video(path, f"decoding frames {start}..{end - 1}") as (container, stream):
        container.seek(int(index.keyframe_pts[keyframe]), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            position = np.searchsorted(index.pts, frame.pts) if frame.pts is not None else len(index.pts)
            if position == len(index.pts) or index.pts[position] != frame.pts:
                raise _SeekMissed
            after_keyframe = after_keyframe or frame.key_frame
            if position < wanted:  # decoded on the way from the keyframe
                continue
            if position > wanted or not after_keyframe:
                if wanted == start:
                    raise _SeekMissed
                raise MediaError(f"{path}: frames {wanted}..{position - 1} could not be decoded: "
                                 "the file is corrupt there")
            yield convert(frame)
            wanted += 1
            if wanted == end:
                return
    if wanted == start:
        raise _SeekMissed
    raise _undecoded(path, wanted, end)


def _decode_from_first(
    path: str | Path, start: int, end: int, convert: _RGBConverter
) -> Iterator[np.ndarray]:
    decoded = 0
    with _opened_video(path, f"decoding frames {start}..{end - 1}") as (container, stream):
        for frame in container.decode(stream):
            if decoded >= start:
                yield convert(frame)
            decoded += 1
            if decoded == end:
                return
    raise _undecoded(path, max(decoded, start), end)


def _undecoded(path: str | Path, first: int, end: int) -> MediaError:
    return MediaError(f"{path}: frames {first}..{end - 1} could not be decoded: the decoder ran out of "
                      "frames before them; the file is probably truncated")


class _RGBConverter:
    """Decoded frames to HxWx3 uint8 RGB (or BGR: `bgr`) turned by their display rotation, at width x
    height when both are > 0, through one swscale context on one thread (least CPU time per frame).

    Shrinking, swscale's BGR path costs less and comes closer to the frame than its RGB one: a 1080p
    H.264 frame shrunk to 640x360 by area cost 1.15 core-ms as bgr24 against 2.10 as rgb24, to 256x144
    0.83 against 1.26 with the flip to BGR that scene analysis needed, and it lay 0.96 levels on average
    from the decoded picture converted to RGB in float and shrunk by area (OpenCV), against 1.45 (2-core
    machine, 2026-12-03). At full size the two cost the same."""

    def __init__(self, width: int, height: int, bgr: bool = False) -> None:
        from av.video.reformatter import VideoReformatter

        self.width, self.height = width, height
        self.format = "bgr24" if bgr else "rgb24"
        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        quarter_turns = round(frame.rotation / 90) % 4  # counterclockwise
        size = {}
        if self.width:
            turned = quarter_turns % 2
            size = {"width": self.height if turned else self.width,
                    "height": self.width if turned else self.height, "interpolation": SCALE_INTERPOLATION}
        rgb = self._reformatter.reformat(frame, format=self.format, threads=1, **size).to_ndarray()
        if not quarter_turns:
            return rgb
        import cv2  # turns a 1080p frame in 0.5 ms where a copy of np.rot90's view takes 6.5 ms

        turn = (cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)[quarter_turns - 1]
        return cv2.rotate(rgb, turn)


class _PreviewConverter:
    """Decoded frames to what `full` makes of them (full-size RGB by default), keeping beside each (in
    `shrunk`) a BGR copy (RetinaFace's channel order) shrunk so the longest side is at most `max_side`,
    both from the same decoded picture: the shrinking reads the decoder's own planes (area filter), not
    the full-size result. `always`: keep the copy also when nothing is shrunk (scale 1: a BGR copy at
    the source size)."""

    def __init__(self, max_side: int, count: int, full=None, always: bool = False) -> None:
        self.max_side, self.full, self.small = max_side, full or _RGBConverter(0, 0), None
        self.scale, self.always = 1.0, always
        # the shrunk copies, written into one array of `count` frames as they come (pipeline.scratch's
        # in a stage: no clip-sized array, nor a block per frame, fresh from the kernel for each clip)
        self.count, self.taken, self._stack = count, 0, None

    @property
    def shrunk(self) -> np.ndarray | None:
        """The shrunk BGR copies of the frames converted so far (None when none were kept)."""
        return None if self._stack is None else self._stack[: self.taken]

    @property
    def into(self) -> np.ndarray | None:
        return getattr(self.full, "into", None)

    @into.setter
    def into(self, out: np.ndarray | None) -> None:
        if hasattr(self.full, "into"):
            self.full.into = out

    def __call__(self, frame) -> np.ndarray:
        full = self.full(frame)
        if self.small is None:
            height, width = frame.height, frame.width
            if round(frame.rotation / 90) % 2:  # the full-size result is upright
                height, width = width, height
            self.scale = min(1.0, self.max_side / max(height, width)) if self.max_side > 0 else 1.0
            self.small = _RGBConverter(max(1, round(width * self.scale)), max(1, round(height * self.scale)),
                                       bgr=True)  # fmt: skip
        if self.scale < 1.0 or self.always:
            small = self.small(frame)
            if self._stack is None:
                self._stack = scratch.empty("shrunk", (self.count, *small.shape))
            if self.taken == self.count:
                raise ValueError(f"more than the {self.count} frames asked for were converted")
            self._stack[self.taken] = small
            self.taken += 1
        return full


def read_frames_with_preview(
    path: str | Path, start: int, end: int, max_side: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames [start, end) at full size (RGB) and, from the same decode, in BGR shrunk so that their
    longest side is at most `max_side` (0: not shrunk; then a BGR view of the full-size frames); the
    shrinking's scale (<= 1) is returned with them.

    This is how the faces stage reads a clip of odd sizes: the detector looks at the shrunk frames,
    alignment cuts the crops from the full-size ones, and each frame is decoded once for both."""
    index = _checked_frame_index(path, 0, 0)
    _check_range(path, start, end, index.frame_count)
    if start == end:
        empty = read_frames(path, start, end)
        return empty, empty, 1.0
    convert = _PreviewConverter(max_side, end - start)
    with closing(_decoded_frames(path, index, start, end, 0, 0, convert=convert)) as frames:
        full = _take(frames, end - start, path, start)
    return full, (convert.shrunk if convert.shrunk is not None else full[..., ::-1]), convert.scale


def read_pictures_with_preview(
    path: str | Path, start: int, end: int, max_side: int
) -> tuple[np.ndarray, Colour | None, np.ndarray, float]:
    """Frames [start, end) as decoded I420 pictures (TxH*3/2xW, see I420Converter; even sizes only) with
    their Colour, and from the same decode BGR frames shrunk so that their longest side is at most
    `max_side` (0: not shrunk), with the shrinking's scale (<= 1).

    The faces stage reads clips of even sizes so: the detector looks at the shrunk BGR frames and
    alignment cuts the crops from the pictures' planes (pipeline.faces.warp_face_i420), so that no
    full-size frame is converted to RGB (at 1080p that conversion costs about as much as decoding).

    Raises:
        MediaError: odd frame sizes (no I420 layout), or what decoding raises."""
    index = _checked_frame_index(path, 0, 0)
    _check_range(path, start, end, index.frame_count)
    convert = _PreviewConverter(max_side, end - start, I420Converter(), always=True)
    if start == end:
        empty = read_frames(path, start, end)
        height, width = empty.shape[1:3]
        return np.zeros((0, height * 3 // 2, width), np.uint8), None, empty, 1.0
    with closing(_decoded_frames(path, index, start, end, 0, 0, convert=convert)) as frames:
        pictures = _take(frames, end - start, path, start, convert)
    return pictures, convert.full.colour, convert.shrunk, convert.scale


def _take(
    frames: Iterator[np.ndarray], count: int, path: str | Path, first: int, convert=None
) -> np.ndarray:
    """The next `count` frames stacked into one TxHxWx3 array. Where `convert` (what makes the frames)
    can write a frame into a given array (its `into`, I420Converter's), frames after the first are
    written straight into their place in the stack (at 1080p a copy of 3 MB a frame fewer)."""
    frame = next(frames)
    stacked = scratch.empty("frames", (count, *frame.shape))  # memory kept from the last clip, in a stage
    stacked[0] = frame
    direct = hasattr(convert, "into")
    for offset in range(1, count):
        slot = stacked[offset]
        if direct:
            convert.into = slot
        frame = next(frames)
        if frame.shape != stacked.shape[1:]:
            raise MediaError(f"{path}: frame {first + offset} is {frame.shape[1]}x{frame.shape[0]}, not "
                             f"{stacked.shape[2]}x{stacked.shape[1]} like frame {first}: the size changes")
        if frame is not slot:
            slot[...] = frame
    if direct:
        convert.into = None
    return stacked


@contextmanager
def _opened_video(path: str | Path, action: str):
    """(container, first video stream that is not cover art) set to decode with threads; PyAV's errors
    while opening or during `action` become MediaErrors naming the file and the cause."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise MediaError(f"{path}: {_why_not_a_video(Path(path), error)}") from None
    try:
        cover_art = av.stream.Disposition.attached_pic
        stream = next((s for s in container.streams.video if not s.disposition & cover_art), None)
        if stream is None:
            kinds = Counter("cover picture" if s.disposition & cover_art else s.type
                            for s in container.streams)  # fmt: skip
            held = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "none"
            raise MediaError(f"{path}: not a video: no video stream (streams in the file: {held})")
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = DECODE_THREADS
        yield container, stream
    except av.error.FFmpegError as error:
        raise MediaError(f"{path}: {action} failed: {_av_cause(error)}") from None
    finally:
        container.close()


def _turned(info: VideoInfo, rotation: int) -> VideoInfo:
    """`info` with its display rotation: a quarter turn swaps the decoded frames' width and height."""
    width, height = (info.height, info.width) if rotation in (90, 270) else (info.width, info.height)
    return replace(info, rotation=rotation, width=width, height=height)


def _bit_depth(pix_fmt: str) -> int:
    match = re.search(r"p(\d+)(le|be)?$", pix_fmt)
    return int(match.group(1)) if match else 8


def _frame_rate(
    timebase: Fraction, packets: list[tuple[int, int]], header: Fraction | None, path: Path, variable: bool
) -> Fraction:
    """Exact rate from packet durations when the time base can express it, else the nearest standard;
    for a variable frame rate, the mean rate frame_count / (last frame's end - first frame's start)."""
    if variable:
        return _snap_rate(float(len(packets) / (_stream_span(packets) * timebase)))
    durations = [duration for _, duration in packets if duration > 0]
    span_rate = None
    if len(packets) > 1:
        pts = [p for p, _ in packets]
        span = (max(pts) - min(pts)) * timebase
        span_rate = (len(packets) - 1) / span if span > 0 else None
    estimate = span_rate or header
    if durations:
        exact = 1 / (Counter(durations).most_common(1)[0][0] * timebase)
        if estimate is None or abs(exact / estimate - 1) < 0.002:
            return exact
    if estimate is None:
        raise MediaError(f"{path}: could not determine the frame rate")
    return _snap_rate(float(estimate))


def _frame_intervals(packets: list[tuple[int, int]]) -> list[int]:
    """Ticks between consecutive frames in display order."""
    pts = sorted(p for p, _ in packets)
    return [after - before for before, after in zip(pts, pts[1:], strict=False)]


def _variable_frame_rate(packets: list[tuple[int, int]]) -> bool:
    """Frame intervals differ by more than rounding: over 2 ticks and over 1% of the mean interval
    (a Matroska film at 24000/1001 in milliseconds alternates 41 and 42 ticks and is not variable)."""
    intervals = _frame_intervals(packets)
    if len(intervals) < 2:
        return False
    spread = max(intervals) - min(intervals)
    return spread > 2 and spread > 0.01 * sum(intervals) / len(intervals)


def _stream_span(packets: list[tuple[int, int]]) -> int:
    """Ticks from the first frame's start to the last frame's end (its duration, else the mean interval)."""
    pts = [p for p, _ in packets]
    last_duration = max(packets, key=lambda packet: packet[0])[1]
    intervals = _frame_intervals(packets)
    if last_duration <= 0:
        last_duration = round(sum(intervals) / len(intervals)) if intervals else 1
    return max(pts) - min(pts) + last_duration


def _snap_rate(rate: float) -> Fraction:
    for standard in STANDARD_RATES:
        if abs(rate / standard - 1) < 0.001:
            return standard
    return Fraction(rate).limit_denominator(1001)


def _read_head(path: Path, size: int = 512) -> bytes:
    """The file's first bytes; MediaError when it is absent, unreadable or empty."""
    if not path.is_file():
        raise MediaError(f"{path}: video file not found")
    try:
        with path.open("rb") as file:
            head = file.read(size)
    except PermissionError:
        raise MediaError(
            f"{path}: permission denied: this process may not read the file; give the run's user read access"
        ) from None
    except OSError as error:
        raise MediaError(f"{path}: cannot read the file: {error.strerror or error}") from None
    if not head:
        raise MediaError(f"{path}: zero-byte file: it is empty (an interrupted copy or upload?)")
    return head


def _why_not_a_video(path: Path, error: Exception) -> str:
    """Plain words for a file PyAV cannot open, from its first bytes and its layout."""
    head = _read_head(path)  # missing, unreadable or empty: said as such
    if _looks_like_text(head):
        first_line = head.decode("utf-8", errors="replace").strip().splitlines()[0][:40]
        return f"a text file, not a video: no decodable video (it begins {first_line!r})"
    if head[4:8] == b"ftyp" and b"moov" not in _mp4_boxes(path):
        return ("truncated: an MP4 without its index (moov atom not found), which is written last: "
                "an interrupted copy or recording?")  # fmt: skip
    return f"no decodable video: cannot open it as a video: {_av_cause(error)}"


def _mp4_boxes(path: Path) -> list[bytes]:
    """The types of an MP4's top-level boxes (ftyp, moov, mdat, ...), as far as the file holds them."""
    kinds = []
    with path.open("rb") as file:
        while len(header := file.read(8)) == 8:
            size, kind = int.from_bytes(header[:4], "big"), header[4:]
            kinds.append(kind)
            if size == 1:  # a 64-bit size follows the type
                size = int.from_bytes(file.read(8), "big") - 8
            if size < 8:  # 0: the box runs to the end of the file
                break
            file.seek(size - 8, os.SEEK_CUR)
    return kinds


def _truncation(path: str, size: int, indexed_end: int | None, latest: int | None) -> str:
    """Why a file ends before its container says it does, or "": its index lists packets after the last
    one read (MP4's sample table), or it is shorter than its Matroska elements' sizes say."""
    if indexed_end is not None and latest is not None and indexed_end > latest:
        return "its index lists video packets after the last one the file holds"
    end = _matroska_end(path)
    if end is not None and end > size:
        return f"the file holds {size} bytes where its Matroska structure runs to {end}"
    return ""


def _matroska_end(path: str) -> int | None:
    """Where a Matroska/WebM file should end: where its Segment ends as declared, or, for a Segment of
    unknown size (a live recording's), where the last element in it ends; None when it is not Matroska
    or a size it needs is unknown."""
    with open(path, "rb") as file:
        if file.read(len(EBML_MAGIC)) != EBML_MAGIC:
            return None
        _, size, start = _ebml_element(file, 0)
        if size is None:
            return None
        element, size, start = _ebml_element(file, start + size)
        if element != MATROSKA_SEGMENT:
            return None
        if size is not None:
            return start + size
        position, file_size = start, os.fstat(file.fileno()).st_size
        while position < file_size:  # clusters, cues, tags: each with its size
            _, size, start = _ebml_element(file, position)
            if size is None:
                return None
            position = start + size
        return position


def _ebml_element(file, position: int) -> tuple[bytes, int | None, int]:
    """(id, size of its data or None when unknown, where its data starts) of the EBML element at
    `position` of an open file."""
    file.seek(position)
    head = file.read(12)
    id_length = 9 - head[0].bit_length() if head else 9  # leading zeros + 1
    if id_length > 4:
        return b"", None, position
    size, start = _ebml_number(head, id_length)
    return head[:id_length], size, position + start


def _ebml_number(data: bytes, position: int) -> tuple[int | None, int]:
    """(value, position after it) of the EBML variable-length size at `position`; value None for an unknown
    size (all value bits set) or bytes that hold no size."""
    length = 9 - data[position].bit_length() if position < len(data) else 9  # leading zeros + 1
    if length > 8 or position + length > len(data):
        return None, position
    value = int.from_bytes(data[position:position + length], "big") & ((1 << 7 * length) - 1)
    return (None if value == (1 << 7 * length) - 1 else value), position + length


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 without control characters other than whitespace (the last character may be cut)."""
    if b"\0" in head:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return bool(text) and all(char.isprintable() or char in "\t\n\r\f" for char in text)


def _av_cause(error: Exception) -> str:
    """Plain words for a PyAV error: the libav error code's meaning, with libav's own message."""
    message = getattr(error, "strerror", None) or str(error) or type(error).__name__
    code = abs(getattr(error, "errno", None) or 0)
    return f"{AV_ERRORS[code]} ({message})" if code in AV_ERRORS else message


def _concat_quote(path: Path) -> str:
    return str(path).replace("'", "'\\''")


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no message)"
