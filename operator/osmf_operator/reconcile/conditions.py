"""metav1.Condition bookkeeping: lastTransitionTime changes only when the status does."""

from __future__ import annotations

from osmf_core.api.common import Condition


class ConditionSet:
    def __init__(self, conditions: list[Condition], generation: int, now: str):
        self.conditions = conditions
        self.generation = generation
        self.now = now

    def find(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def get_status(self, type_: str) -> str | None:
        found = self.find(type_)
        return found.status if found else None

    def get_reason(self, type_: str) -> str | None:
        found = self.find(type_)
        return found.reason if found else None

    def is_(self, type_: str, status: str, reason: str) -> bool:
        found = self.find(type_)
        return bool(found and found.status == status and found.reason == reason)

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        found = self.find(type_)
        if found is None:
            self.conditions.append(Condition(
                type=type_, status=status, reason=reason, message=message,
                last_transition_time=self.now, observed_generation=self.generation,
            ))
            return
        if found.status != status:
            found.last_transition_time = self.now
        found.status = status
        found.reason = reason
        found.message = message
        found.observed_generation = self.generation

    def set_if_absent(self, type_: str, status: str, reason: str, message: str) -> None:
        if self.find(type_) is None:
            self.set(type_, status, reason, message)
