"""The README documents what the code does."""
from __future__ import annotations

from pathlib import Path

from pipeline.catalog import CLIPS_SCHEMA, TRACKS_SCHEMA, VIDEOS_SCHEMA, schema_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_documents_the_catalog_schemas():
    text = README.read_text()
    for schema in (VIDEOS_SCHEMA, CLIPS_SCHEMA, TRACKS_SCHEMA):
        assert schema_markdown(schema) in text


def test_readme_names_the_two_setup_commands():
    text = README.read_text()
    assert "make setup" in text and "make test" in text


def test_the_python_example_runs(demo_archive, shared_dir, tmp_path):
    """The README's `Restore from Python` example, on the demo archive's film_b, writing into tmp_path.

    configs/smoke.yaml reads the detector's weights from ../shared; the example is given the folder the
    tests read (DPT_SHARED_DIR or ../shared), so a checkout elsewhere runs it too.
    """
    import subprocess
    import sys

    text = README.read_text()
    example = text.split("## Restore from Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    film = demo_archive.parent / "film_b.mp4"
    example = example.replace('"demo/film_b.mp4"', repr(str(film)))
    example = example.replace('"film_b_restored.mp4"', repr(str(tmp_path / "film_b_restored.mp4")))
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    loading = 'load_settings("configs/smoke.yaml")'
    assert loading in example
    given = f'load_settings("configs/smoke.yaml", ["faces.detector_weights={weights}"])'
    example = example.replace(loading, given)
    done = subprocess.run([sys.executable, "-c", example], cwd=README.parent, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    frames_out, tracks, face_frames = map(int, done.stdout.split())
    assert frames_out == 50 and tracks >= 1 and face_frames > 0
    assert (tmp_path / "film_b_restored.mp4").is_file()
