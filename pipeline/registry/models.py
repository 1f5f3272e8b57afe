"""Typed views of the registry's harvest documents; unknown fields are kept, never dropped."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HarvestPhase(enum.Enum):
    """Where a harvest stands, read from its `last_harvest_dt` field."""

    NEVER = "never"  # field absent or null: never harvested
    PENDING = "pending"
    HARVESTING = "harvesting"
    DELETING = "deleting"
    FINISHED = "finished"  # the field holds an ISO date


class HarvestStatus(enum.Enum):
    """Outcome of the last finished harvest (`last_harvest_status`)."""

    OK = "ok"
    FAIL = "fail"


_IN_PROGRESS = frozenset({HarvestPhase.PENDING, HarvestPhase.HARVESTING, HarvestPhase.DELETING})


def parse_registry_date(value: str) -> datetime | None:
    """Parse a JavaScript `Date.toJSON()` string (`...T..:..:..(.mmm)Z`) as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class HarvestDocument(BaseModel):
    """One document of `/api/v1/Harvests`; `model_extra` keeps fields this model does not name."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    id: str = Field(alias="_id")
    name: str | None = None
    url: str | None = None
    organization: str | None = None
    harvest_type: str | None = None
    harvest_interval: float | str | None = None  # a number in the schema; tolerate text
    publish: bool | None = None
    harvest_contact: str | None = None
    last_harvest_dt: str | None = None
    last_harvest_status: str | None = None
    last_record_count: int | None = None
    last_good_count: int | None = None
    last_bad_count: int | None = None

    @property
    def phase(self) -> HarvestPhase:
        """The phase encoded in `last_harvest_dt` (a word, a date, or nothing)."""
        value = self.last_harvest_dt
        if not value:
            return HarvestPhase.NEVER
        for phase in _IN_PROGRESS:
            if value == phase.value:
                return phase
        return HarvestPhase.FINISHED if parse_registry_date(value) else HarvestPhase.NEVER

    @property
    def in_progress(self) -> bool:
        """True while the registry still works on the last trigger (pending/harvesting/deleting)."""
        return self.phase in _IN_PROGRESS

    @property
    def finished_at(self) -> datetime | None:
        """When the last harvest finished, or None while none has."""
        if self.phase is not HarvestPhase.FINISHED or self.last_harvest_dt is None:
            return None
        return parse_registry_date(self.last_harvest_dt)

    @property
    def status(self) -> HarvestStatus | None:
        """The last finished harvest's outcome, None when unknown."""
        try:
            return HarvestStatus(self.last_harvest_status)
        except ValueError:
            return None

    def raw(self) -> dict[str, Any]:
        """The document as the registry sent it, unknown fields included."""
        return self.model_dump(by_alias=True)
