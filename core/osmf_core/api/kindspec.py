"""What a kind's spec references, inherits and requires together, declared once on its model.

Every kind's spec model is a `KindSpec` and lists, as class attributes:
- `references`: the resources it reads (`Ref`: input role, spec field, kind, required task, optional
  or conditional);
- `inherits`: inputs it takes over from a referenced run's own inputs (`Inherit`);
- `raw_data`: the spec field naming raw data, whose listing is fingerprinted into the input hash;
- `serving_section`: the spec section that, when enabled, makes the kind serve (KServe);
- `required_when`: other "field X is needed when field Y is V" rules;
- `transition_rules`: CEL rules on updates, which only the API server can check.

The model's own check and the CRD's CEL rules are derived here; the operator's plan, `osmf validate`
and the job config's input check ask the same declarations (`KindInfo` in kinds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import model_validator
from pydantic.alias_generators import to_camel

from .common import ApiModel, cel


@dataclass(frozen=True)
class When:
    """A condition on the spec: `spec.<field> == equals` (`field` may be dotted: `selection.scorer`)."""

    field: str  # snake_case attribute path
    equals: str

    def holds(self, spec: ApiModel) -> bool:
        value: Any = spec
        for part in self.field.split("."):
            value = getattr(value, part)
        return value == self.equals

    @property
    def path(self) -> str:
        return ".".join(to_camel(part) for part in self.field.split("."))

    def cel_false(self) -> str:
        """CEL that holds when the condition does not. A nested field may be absent (the API server also
        checks rules against `{}` defaults), so each level is guarded."""
        parts = self.path.split(".")
        guards = [f"!has(self.{'.'.join(parts[: i + 1])})" for i in range(len(parts))] if len(parts) > 1 else []
        return " || ".join([*guards, f"self.{self.path} != '{self.equals}'"])


@dataclass(frozen=True)
class RequiredWhen:
    """`field` must be set when the condition holds: one model check and one CEL rule."""

    field: str  # snake_case attribute
    when: When
    hint: str = ""  # what to set it to, shown in the message

    @property
    def message(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.when.path} {self.when.equals} needs {to_camel(self.field)}{hint}"

    def cel(self) -> dict[str, str]:
        alias = to_camel(self.field)
        return cel(f"{self.when.cel_false()} || has(self.{alias})", self.message, f".{alias}")

    def check(self, spec: ApiModel) -> None:
        if self.when.holds(spec) and getattr(spec, self.field) is None:
            raise ValueError(self.message)


@dataclass(frozen=True)
class Ref:
    """One reference to another resource in the namespace (`spec.<field>.name`, DESIGN §2)."""

    role: str  # the job-config input its output fills (Role)
    field: str  # snake_case spec attribute holding the reference
    kind: str | None = None  # None: the reference names its own kind (spec.generatorRef.kind)
    task: str | None = None  # the referenced run's spec.task, for kinds that have one
    optional: bool = False  # may be left out; then it cannot be added or removed later
    when: When | None = None  # used, and required, only when this holds
    hint: str = ""  # what it must point at, for the "needs" message

    @property
    def path(self) -> str:
        return f"spec.{to_camel(self.field)}.name"

    def required_rule(self) -> RequiredWhen | None:
        return RequiredWhen(self.field, self.when, self.hint) if self.when else None

    def target(self, spec: ApiModel) -> tuple[str, str] | None:
        """(kind, name) it points at, or None where it does not apply (unset, or its condition false)."""
        if self.when is not None and not self.when.holds(spec):
            return None
        value = getattr(spec, self.field)
        if value is None:
            return None
        return (self.kind or value.kind, value.name)


@dataclass(frozen=True)
class Inherit:
    """An input taken over from the run a reference points at (that run recorded it among its own inputs).

    Where the referenced run has no such input (a campaign's pretrain generator has no policy), there is none.
    """

    role: str
    via: str  # the role of the reference it comes through


def _kind_cel_rules(schema: dict[str, Any], model: type[KindSpec]) -> None:
    rules = [rule.cel() for rule in model.cross_field_rules()]
    for ref in model.references:
        if ref.optional:
            # Field-level immutability only runs when old and new both have the field; this covers add/remove.
            alias = to_camel(ref.field)
            rules.append(cel(f"has(self.{alias}) == has(oldSelf.{alias})",
                             f"{alias} cannot be added or removed; create a new resource instead", f".{alias}"))
    rules += model.transition_rules
    if rules:
        schema["x-kubernetes-validations"] = rules


class KindSpec(ApiModel):
    """The spec of one of the five kinds (see the module docstring for the declarations)."""

    model_config = ApiModel.model_config | {"json_schema_extra": _kind_cel_rules}

    references: ClassVar[tuple[Ref, ...]] = ()
    inherits: ClassVar[tuple[Inherit, ...]] = ()
    raw_data: ClassVar[str | None] = None  # dotted snake_case path to a URI, e.g. "data.uri"
    serving_section: ClassVar[str | None] = None  # a section with an `enabled` flag
    required_when: ClassVar[tuple[RequiredWhen, ...]] = ()
    transition_rules: ClassVar[tuple[dict[str, str], ...]] = ()

    @classmethod
    def cross_field_rules(cls) -> tuple[RequiredWhen, ...]:
        derived = tuple(rule for rule in (ref.required_rule() for ref in cls.references) if rule is not None)
        return (*derived, *cls.required_when)

    @model_validator(mode="after")
    def _cross_fields(self) -> "KindSpec":
        for rule in self.cross_field_rules():
            rule.check(self)
        return self
