"""examples/ are runnable documentation: they parse, and the local one is exactly the embedded demo."""

from __future__ import annotations

from pathlib import Path

import yaml

from osmf_operator.cli import load_resources
from osmf_operator.local.demo import demo_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_example_parses_with_the_typed_models():
    resources, problems = load_resources([str(EXAMPLES)])
    assert problems == []
    assert {r.kind for r in resources} == {"AudienceGrouping", "GAIPDataset", "GMLLMTraining", "GroupDPORun", "AdImageCampaign"}


def test_local_example_is_the_embedded_demo_pipeline():
    example = [d for d in yaml.safe_load_all((EXAMPLES / "local-pipeline" / "pipeline.yaml").read_text()) if d]
    assert example == demo_documents("./osmf-world")
