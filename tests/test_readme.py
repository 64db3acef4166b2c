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
