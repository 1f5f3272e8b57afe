"""The IOOS Catalog Registry client and the debounced notifier that asks it to re-harvest."""

from pipeline.registry.client import RegistryClient, password_digest
from pipeline.registry.models import HarvestDocument, HarvestPhase, HarvestStatus
from pipeline.registry.notifier import (
    META_NAMESPACE,
    NotifierStore,
    NullRegistryMetrics,
    RegistryMetrics,
    RegistryNotifier,
)
from pipeline.registry.outcomes import HarvestOutcome

__all__ = [
    "META_NAMESPACE",
    "HarvestDocument",
    "HarvestOutcome",
    "HarvestPhase",
    "HarvestStatus",
    "NotifierStore",
    "NullRegistryMetrics",
    "RegistryClient",
    "RegistryMetrics",
    "RegistryNotifier",
    "password_digest",
]
