"""How a training run is executed (training.strategy ddp | fsdp; keepCheckpoints) is not what it produces: out of the input hash."""

from __future__ import annotations

import pytest
from tests.factories import resource

from osmf_operator.reconcile import input_hash
from osmf_operator.reconcile.plan import result_spec


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


@pytest.mark.parametrize(("kind", "section"), [("GMLLMTraining", "training"), ("GroupDPORun", "dpo")])
def test_keep_checkpoints_stays_out_of_the_input_hash(kind, section) -> None:
    base, keep = resource(kind), resource(kind, **{section: {"keepCheckpoints": True}})
    assert getattr(base.spec, section).keep_checkpoints is False and getattr(keep.spec, section).keep_checkpoints is True
    assert _hash(base) == _hash(keep)
