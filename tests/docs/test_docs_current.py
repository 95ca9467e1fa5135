"""The API documents in docs/ are what the code generates today."""

from pathlib import Path

from gridwire.apidocs import asyncapi_yaml, openapi_json

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_matches_the_code():
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi_yaml(), "run `gridwire docs asyncapi` and commit docs/asyncapi.yaml"


def test_openapi_document_matches_the_code():
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi_json(), "run `gridwire docs openapi` and commit docs/openapi.json"
