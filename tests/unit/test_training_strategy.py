"""GMLLMTraining's training.strategy (ddp | fsdp) is how a run is sharded, not what it produces."""

from __future__ import annotations

import pytest

from osmf_operator.core import input_hash
from osmf_operator.core.plan import result_spec
from tests.factories import resource


def _hash(res) -> str:
    return input_hash(res.kind, res.spec, {})


def test_strategy_defaults_to_ddp_and_stays_out_of_the_input_hash() -> None:
    base = resource("GMLLMTraining")
    fsdp = resource("GMLLMTraining", training={"strategy": "fsdp"})
    assert base.spec.training.strategy == "ddp" and fsdp.spec.training.strategy == "fsdp"
    # Switching strategy keeps the run directory (a Job that ran out of memory under DDP resumes its
    # checkpoint under FSDP), and hashes of runs made before the field existed do not change.
    assert _hash(base) == _hash(fsdp)
    assert "strategy" not in result_spec(fsdp.spec)["training"]
    assert _hash(base) != _hash(resource("GMLLMTraining", training={"learningRate": 1e-4}))


def test_an_unknown_strategy_is_rejected() -> None:
    with pytest.raises(Exception, match="strategy"):
        resource("GMLLMTraining", training={"strategy": "zero3"})
