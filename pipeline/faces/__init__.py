"""The face side of the pipeline: detect, track, smooth, align, paste back (no Ray here)."""
from pipeline.faces.align import AlignedFaces, align_track, alignment_affine, warp_face, warp_face_i420
from pipeline.faces.aligned_clip import faces_to_frames, frames_to_faces
from pipeline.faces.detect import Detection, DetectorWeightsError, FaceDetector
from pipeline.faces.paste import PastedFace, paste_faces, paste_faces_i420
from pipeline.faces.settings import FaceSettings
from pipeline.faces.track import Track, skip_counts, track_faces

__all__ = [
    "AlignedFaces",
    "Detection",
    "DetectorWeightsError",
    "FaceDetector",
    "FaceSettings",
    "PastedFace",
    "Track",
    "align_track",
    "alignment_affine",
    "faces_to_frames",
    "frames_to_faces",
    "paste_faces",
    "paste_faces_i420",
    "skip_counts",
    "track_faces",
    "warp_face",
    "warp_face_i420",
]
