"""A rule's `times` is spent only on requests it actually answers."""

from __future__ import annotations

from pipeline.emulator.clock import EmulatorClock
from pipeline.emulator.faults import FaultInjector


def test_a_request_answered_by_an_earlier_rule_does_not_use_up_a_later_rules_times() -> None:
    plan = {
        "rules": [
            {"kind": "status", "endpoint": "*", "status": 503, "times": 1},
            {"kind": "gone", "endpoint": "dataProductDelivery.download", "times": 1},
        ]
    }
    injector = FaultInjector(1, EmulatorClock(), plan)
    statuses = []
    for _ in range(3):
        decision = injector.decide("dataProductDelivery.download", "q")
        statuses.append(decision.response.status if decision.response else 200)
    assert statuses == [503, 410, 200]
