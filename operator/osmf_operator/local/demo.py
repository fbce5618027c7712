"""The embedded default pipeline that `osmf demo` runs."""

from __future__ import annotations

from importlib.resources import files

import yaml

from osmf_core.api import Resource, parse_resource

PIPELINE = "demo-pipeline.yaml"


def demo_documents(data_uri: str) -> list[dict]:
    text = files(__package__).joinpath(PIPELINE).read_text()
    return [doc for doc in yaml.safe_load_all(text.replace("DATA_URI", data_uri)) if doc]


def demo_resources(data_uri: str) -> list[Resource]:
    return [parse_resource(doc) for doc in demo_documents(data_uri)]
