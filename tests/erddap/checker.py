"""Apply every ERDDAP loading rule to every `<dataset>` of a datasets.xml fragment.

    violations = check_datasets_xml(xml_text)
    assert not violations, format_violations(violations)

A dataset with no violation is one a stock ERDDAP (default setup.xml) would load, as far as
the rules in rules.py reach.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tests.erddap.config import parse_datasets_xml
from tests.erddap.dataset import LoadedDataset, load
from tests.erddap.rules import RULES, Rule


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule in one dataset."""

    dataset_id: str
    rule: str
    message: str
    source: str

    def __str__(self) -> str:
        return f"{self.dataset_id}: [{self.rule}] {self.message}\n    source: {self.source}"


def load_datasets(xml_text: str) -> list[LoadedDataset]:
    """Every `<dataset>` of the fragment, its files selected and read."""
    configs = parse_datasets_xml(xml_text)
    counts = Counter(c.dataset_id.lower() for c in configs)
    return [load(c, duplicate_id=counts[c.dataset_id.lower()] > 1) for c in configs]


def check_dataset(dataset: LoadedDataset, rules: Iterable[Rule] = RULES) -> list[Violation]:
    """The violations of one dataset, in rule order."""
    return [
        Violation(dataset.dataset_id, rule.id, message, rule.source)
        for rule in rules
        for message in rule.check(dataset)
    ]


def check_datasets_xml(xml_text: str, rules: Iterable[Rule] = RULES) -> list[Violation]:
    """The violations of every dataset in the fragment."""
    rules = tuple(rules)
    return [v for dataset in load_datasets(xml_text) for v in check_dataset(dataset, rules)]


def format_violations(violations: Iterable[Violation]) -> str:
    """A readable report, one violation per paragraph, with a count per rule at the end."""
    items = list(violations)
    per_rule = Counter(v.rule for v in items)
    summary = ", ".join(f"{rule}: {n}" for rule, n in sorted(per_rule.items()))
    return "\n".join(str(v) for v in items) + f"\n{len(items)} violations ({summary})"
