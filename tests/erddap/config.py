"""datasets.xml `<dataset>` entries as typed values, read the way ERDDAP's SAX reader sees them.

Only the shape is modelled: which tags a `<dataset>` has (in order, with their text), its
global `<addAttributes>` and its `<dataVariable>`s. Whether a tag is allowed is a rule
(rules.py), not a parse error, so the checker can report every problem at once.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

# An <att> value of "null" removes the attribute from the combined attributes
# (EDD.java / EDV.java constructors: "Special case: value="null" causes that item to be removed
# from combinedAttributes").
NULL = "null"
_DECLARATION = re.compile(r"<\?xml.*?\?>", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True, slots=True)
class DataVariable:
    """One `<dataVariable>`: names, declared source type and its `<addAttributes>`."""

    source_name: str
    destination_name: str  # sourceName when the tag is missing or empty (EDV constructor)
    data_type: str | None
    add_attributes: dict[str, str]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """One `<dataset>` entry of datasets.xml."""

    type: str
    dataset_id: str
    tags: tuple[tuple[str, str], ...]  # (tag, text) for every direct child but the two below
    add_attributes: dict[str, str]
    variables: tuple[DataVariable, ...] = field(default=())

    def text(self, tag: str, default: str | None = None) -> str | None:
        """The text of the last `<tag>` (ERDDAP keeps the last one it reads)."""
        found = [text for name, text in self.tags if name == tag]
        return found[-1] if found else default


class ConfigParseError(ValueError):
    """The XML is not a datasets.xml fragment at all."""


def parse_datasets_xml(text: str) -> list[DatasetConfig]:
    """Every `<dataset>` in a datasets.xml document or in a fragment of `<dataset>` entries."""
    body = _COMMENT.sub("", _DECLARATION.sub("", text)).strip()
    if not body.startswith("<erddapDatasets"):
        body = f"<erddapDatasets>{body}</erddapDatasets>"
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ConfigParseError(f"not well-formed XML: {exc}") from exc
    return [_dataset(element) for element in root.findall("dataset")]


def _attributes(element: ET.Element | None) -> dict[str, str]:
    if element is None:
        return {}
    return {att.get("name", ""): (att.text or "").strip() for att in element.findall("att")}


def _dataset(element: ET.Element) -> DatasetConfig:
    tags: list[tuple[str, str]] = []
    add_attributes: dict[str, str] = {}
    variables: list[DataVariable] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue  # a comment
        if child.tag == "addAttributes":
            add_attributes.update(_attributes(child))
        elif child.tag == "dataVariable":
            variables.append(_variable(child))
        else:
            tags.append((child.tag, (child.text or "").strip()))
    return DatasetConfig(
        type=element.get("type", ""),
        dataset_id=element.get("datasetID", ""),
        tags=tuple(tags),
        add_attributes=add_attributes,
        variables=tuple(variables),
    )


def _variable(element: ET.Element) -> DataVariable:
    source = (element.findtext("sourceName") or "").strip()
    destination = (element.findtext("destinationName") or "").strip() or source
    data_type = element.findtext("dataType")
    return DataVariable(
        source_name=source,
        destination_name=destination,
        data_type=data_type.strip() if data_type is not None else None,
        add_attributes=_attributes(element.find("addAttributes")),
        tags=tuple(c.tag for c in element if isinstance(c.tag, str)),
    )
