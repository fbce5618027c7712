"""`osmf validate`: one line per problem, naming the field, never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from tests.factories import body, reward_body

from osmf_core.api import KINDS
from osmf_operator.validate import ERROR, WARNING, Problem, has_errors, schema_problems, validate_paths

REPO = Path(__file__).resolve().parents[2]


# ---- factory --------------------------------------------------------------------------------------


def setting(path: str, value: Any, kind: str = "AudienceGrouping") -> Callable[[], dict]:
    """A valid object of `kind` with the dotted `path` set to value (a missing parent is created)."""

    def build() -> dict:
        doc = body(kind)
        target = doc
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = copy.deepcopy(value)
        return doc

    return build


def dropping(path: str, kind: str = "AudienceGrouping") -> Callable[[], dict]:
    def build() -> dict:
        doc = body(kind)
        target = doc
        *parents, last = path.split(".")
        for key in parents:
            target = target[key]
        del target[last]
        return doc

    return build


def write_docs(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


# (id, document factory, field path named, message fragment, the CRD schema alone also rejects it)
INVALID = [
    ("missing-data", dropping("spec.data"), "spec.data", "required", True),
    ("missing-user-attributes", dropping("spec.userAttributes"), "spec.userAttributes", "required", True),
    ("missing-spec", dropping("spec"), "spec", "required", True),
    ("missing-name", dropping("metadata.name"), "metadata.name", "required", False),
    ("missing-task", dropping("spec.task", "GMLLMTraining"), "spec.task", "required", True),
    ("wrong-type-int", setting("spec.shards", "many"), "spec.shards", "integer", True),
    ("wrong-type-list", setting("spec.userAttributes", "age_band"), "spec.userAttributes", "list", True),
    ("wrong-type-object", setting("spec.clustering", 3), "spec.clustering", "dictionary", True),
    ("quoted-number", setting("spec.shards", "3"), "spec.shards", "remove the quotes", True),
    ("quoted-boolean", setting("spec.serving.enabled", "true", "AdImageCampaign"), "spec.serving.enabled", "remove the quotes", True),
    ("unknown-field", setting("spec.clustring", {"minGroups": 2}), "spec.clustring", "unknown field", True),
    ("unknown-nested-field", setting("spec.clustering.minGroup", 2), "spec.clustering.minGroup", "unknown field", True),
    ("unknown-top-level", setting("specs", {}), "specs", "unknown top-level field", True),
    ("above-maximum", setting("spec.clustering.maxGroups", 6), "spec.clustering.maxGroups", "less than or equal to 5", True),
    ("below-minimum", setting("spec.minImpressions", 0, "GAIPDataset"), "spec.minImpressions", "greater than or equal to 1", True),
    ("exclusive-minimum", setting("spec.training.learningRate", 0, "GMLLMTraining"), "spec.training.learningRate", "greater than 0", True),
    ("too-long", setting("spec.userAttributes", ["x" * 64]), "spec.userAttributes[0]", "at most 63", True),
    ("too-many", setting("spec.userAttributes", [f"a{i}" for i in range(33)]), "spec.userAttributes", "at most 32", True),
    ("bad-quantity", setting("spec.resources.memory", "lots"), "spec.resources.memory", "pattern", True),
    ("duplicate-attribute", setting("spec.userAttributes", ["age", "age"]), "spec.userAttributes", "unique", True),
    ("min-groups-above-max", setting("spec.clustering", {"minGroups": 4, "maxGroups": 3}), "spec.clustering", "minGroups must be <= maxGroups", False),
    ("reward-without-init", setting("spec.task", "reward", "GMLLMTraining"), "spec", "initFromRef", False),
    ("http-uri", setting("spec.data.uri", "http://example.com/logs"), "spec.data.uri", "unsupported URI scheme 'http:'", False),
    ("gs-uri", setting("spec.baseModel.uri", "gs://bucket/llava", "GMLLMTraining"), "spec.baseModel.uri", "unsupported URI scheme 'gs:'", False),
    ("bad-enum-task", setting("spec.task", "finetune", "GMLLMTraining"), "spec.task", "'pretrain' or 'reward'", True),
    ("bad-enum-backend", setting("spec.rendering.backend", "dalle", "AdImageCampaign"), "spec.rendering.backend", "'diffusers' or 'procedural'", True),
    ("bad-enum-generator", setting("spec.generatorRef.kind", "AudienceGrouping", "AdImageCampaign"), "spec.generatorRef.kind", "GroupDPORun", True),
    ("bad-name", setting("metadata.name", "Bad_Name"), "metadata.name", "pattern", False),
    ("bad-ref-name", setting("spec.groupingRef.name", "Not A Name", "GAIPDataset"), "spec.groupingRef.name", "pattern", True),
    ("wrong-api-version", setting("apiVersion", "osmf.dev/v1"), "apiVersion", "v1alpha1", False),
    ("unknown-kind", setting("kind", "AudienceGroupin"), "kind", "unknown kind", False),
]


@pytest.mark.parametrize(("case", "make", "path", "fragment", "_"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_one_line_naming_the_field(tmp_path, case, make, path, fragment, _):
    problems = validate_paths([write_docs(tmp_path / f"{case}.yaml", make())])
    assert has_errors(problems)
    named = [p for p in errors(problems) if p.path == path]
    assert named, f"no problem names {path}: {[str(p) for p in problems]}"
    assert any(fragment in p.message for p in named), [str(p) for p in named]
    for problem in problems:
        line = str(problem)
        assert "\n" not in line and "Traceback" not in line
        assert line.startswith(f"{tmp_path / case}.yaml:doc#1 ")


OF_OSMF_KINDS = [c for c in INVALID if c[1]().get("kind") in KINDS]


@pytest.mark.parametrize(("case", "make", "path", "fragment", "by_schema"), OF_OSMF_KINDS, ids=[c[0] for c in OF_OSMF_KINDS])
def test_crd_schema_and_models_agree(case, make, path, fragment, by_schema):
    """What the API server's structural check rejects, `osmf validate` sees without a cluster, and vice versa."""
    found = schema_problems(make())
    if by_schema:
        assert any(p == path or p.startswith((f"{path}.", f"{path}[")) for p, _ in found), found
    else:
        assert all(p != path for p, _ in found), f"{case} is a model/CEL rule, yet the schema names {path}: {found}"


def test_valid_pipeline_has_no_problems(tmp_path):
    docs = [body("AudienceGrouping"), body("GAIPDataset"), body("GMLLMTraining"), reward_body(), body("GroupDPORun"),
            body("AdImageCampaign")]
    assert validate_paths([write_docs(tmp_path / "pipeline.yaml", *docs)]) == []


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir()))
def test_examples_validate_cleanly(example):
    problems = validate_paths([REPO / "examples" / example])
    assert problems == [], "\n".join(map(str, problems))


# ---- files and documents -------------------------------------------------------------------------


def test_broken_yaml_is_one_line_with_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: osmf.dev/v1alpha1\nkind: AudienceGrouping\nspec:\n  data: {uri: [x\n", encoding="utf-8")
    (problem,) = validate_paths([path])
    assert str(problem).startswith(f"{path}:5:") and "invalid YAML" in problem.message


def test_duplicate_keys_are_rejected_like_kubectl(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("kind: AudienceGrouping\nkind: GAIPDataset\n", encoding="utf-8")
    (problem,) = validate_paths([path])
    assert problem.line == 2 and "duplicate key 'kind'" in problem.message


def test_documents_before_a_syntax_error_are_still_checked(tmp_path):
    path = tmp_path / "mixed.yaml"
    good = yaml.safe_dump(body("GAIPDataset", minImpressions=0))
    path.write_text(good + "---\nfoo: [\n", encoding="utf-8")
    problems = validate_paths([path])
    assert sorted((p.doc, p.path) for p in errors(problems) if p.line is None) == [(1, "spec.minImpressions")]
    assert [p.line for p in problems if "invalid YAML" in p.message] == [good.count("\n") + 3]  # the end of "foo: ["


@pytest.mark.parametrize("content", [["a", "list"], "just a string", 42])
def test_non_mapping_document(tmp_path, content):
    (problem,) = validate_paths([write_docs(tmp_path / "odd.yaml", content)])
    assert problem.severity == ERROR and "not a mapping" in problem.message and problem.doc == 1


def test_document_numbers_are_one_based_and_count_empty_documents(tmp_path):
    path = tmp_path / "multi.yaml"
    bad = body("GAIPDataset", minImpressions=0)
    path.write_text("---\n" + yaml.safe_dump(body("AudienceGrouping")) + "---\n---\n" + yaml.safe_dump(bad), encoding="utf-8")
    (problem,) = validate_paths([path])
    assert str(problem).startswith(f"{path}:doc#3 GAIPDataset/gaip: spec.minImpressions: ")


def test_directories_are_read_recursively_in_order(tmp_path):
    write_docs(tmp_path / "b" / "nested.yml", setting("spec.shards", 0)())
    write_docs(tmp_path / "a.yaml", setting("spec.minImpressions", 0, "GAIPDataset")())
    (tmp_path / "notes.txt").write_text("shards: 0")
    problems = errors(validate_paths([tmp_path]))
    assert [(Path(p.file).name, p.path) for p in problems] == [("a.yaml", "spec.minImpressions"), ("nested.yml", "spec.shards")]


def test_missing_path_and_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    problems = validate_paths([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert [(p.severity, Path(p.file).name) for p in problems] == [(WARNING, "empty"), (ERROR, "nope.yaml")]


def test_other_api_groups_are_skipped_with_a_warning(tmp_path):
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ads"}}
    problems = validate_paths([write_docs(tmp_path / "ns.yaml", namespace, body("AudienceGrouping"))])
    assert [(p.severity, p.obj) for p in problems] == [(WARNING, "Namespace/ads")]
    assert not has_errors(problems)


def test_garbage_never_raises(tmp_path):
    docs = [
        {"apiVersion": "osmf.dev/v1alpha1", "kind": ["AudienceGrouping"]},
        {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping", "metadata": ["x"], "spec": []},
        {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping", "metadata": {"name": "x"}, "spec": None},
        {"apiVersion": "osmf.dev/v1alpha1", "kind": "GMLLMTraining", "metadata": {"name": "x"},
         "spec": {"task": "reward", "datasetRef": "d"}, "status": {"conditions": "many"}},
        {"kind": None},
    ]
    problems = validate_paths([write_docs(tmp_path / "garbage.yaml", *docs)])
    assert {p.doc for p in errors(problems)} == {1, 2, 3, 4, 5}
    assert not any("internal error" in p.message for p in problems)


# ---- across resources ---------------------------------------------------------------------------


def test_reference_to_a_resource_not_in_the_files_is_a_warning(tmp_path):
    (problem,) = validate_paths([write_docs(tmp_path / "gaip.yaml", body("GAIPDataset"))])
    assert problem.severity == WARNING and problem.path == "spec.groupingRef.name"
    assert "AudienceGrouping 'grouping'" in problem.message and "warning:" in str(problem)
    assert not has_errors([problem])


def test_reference_in_another_namespace_does_not_count(tmp_path):
    docs = [body("AudienceGrouping", namespace="team-a"), body("GAIPDataset", namespace="team-b")]
    (problem,) = validate_paths([write_docs(tmp_path / "ns.yaml", *docs)])
    assert problem.severity == WARNING and "namespace 'team-b'" in problem.message


def test_reference_to_a_run_of_the_wrong_task_is_an_error(tmp_path):
    docs = [body("AudienceGrouping"), body("GAIPDataset"), body("GMLLMTraining"), reward_body(),
            body("GroupDPORun", policyRef={"name": "grm"}, rewardModelRef={"name": "gmllm"})]
    problems = validate_paths([write_docs(tmp_path / "swap.yaml", *docs)])
    assert [(p.path, p.severity) for p in problems] == [("spec.policyRef.name", ERROR), ("spec.rewardModelRef.name", ERROR)]
    assert "task 'reward'" in problems[0].message and "needs task 'pretrain'" in problems[0].message


def test_campaign_generator_must_be_a_pretrain_run(tmp_path):
    docs = [body("AudienceGrouping"), body("GAIPDataset"), body("GMLLMTraining"), reward_body(),
            body("AdImageCampaign", generatorRef={"kind": "GMLLMTraining", "name": "grm"})]
    problems = validate_paths([write_docs(tmp_path / "campaign.yaml", *docs)])
    assert [(p.obj, p.path, p.severity) for p in problems] == [("AdImageCampaign/campaign", "spec.generatorRef.name", ERROR)]


def test_the_same_resource_twice_is_an_error(tmp_path):
    first = write_docs(tmp_path / "a.yaml", body("AudienceGrouping"))
    second = write_docs(tmp_path / "b.yaml", body("AudienceGrouping", shards=2), body("GAIPDataset", name="grouping"))
    problems = validate_paths([first, second])
    assert [(Path(p.file).name, p.path) for p in problems] == [("b.yaml", "metadata.name")]
    assert f"{first}:doc#1" in problems[0].message


def test_a_misspelled_field_names_the_nearest_one(tmp_path):
    doc = body("AudienceGrouping")
    doc["spec"]["userAtributes"] = doc["spec"].pop("userAttributes")
    doc["spec"]["clustering"] = {"minGroup": 2}
    doc["spec"]["colour"] = "blue"
    (tmp_path / "ag.yaml").write_text(yaml.safe_dump(doc))
    lines = {f"{p.path}: {p.message}" for p in validate_paths([tmp_path])}
    assert "spec.userAtributes: unknown field; did you mean userAttributes?" in lines
    assert "spec.clustering.minGroup: unknown field; did you mean minGroups?" in lines
    assert "spec.colour: unknown field; remove it or check its spelling" in lines
    # the same from the schema check alone (what the API server's structural validation would refuse)
    assert ("spec.userAtributes", "unknown field; did you mean userAttributes?") in schema_problems(doc)
