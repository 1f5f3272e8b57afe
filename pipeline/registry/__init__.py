"""The IOOS Catalog Registry client and the debounced notifier that asks it to re-harvest."""

from pipeline.registry.client import RegistryClient, password_digest
from pipeline.registry.journal import META_NAMESPACE, NotifierStore
from pipeline.registry.metrics import NullRegistryMetrics, RegistryMetrics
from pipeline.registry.models import HarvestDocument, HarvestPhase, HarvestStatus
from pipeline.registry.notifier import (
    NotifierSettings,
    RegistryNotifier,
    build_notifier,
    open_notifier,
)
from pipeline.registry.outcomes import HarvestOutcome

__all__ = [
    "META_NAMESPACE",
    "HarvestDocument",
    "HarvestOutcome",
    "HarvestPhase",
    "HarvestStatus",
    "NotifierSettings",
    "NotifierStore",
    "NullRegistryMetrics",
    "RegistryClient",
    "RegistryMetrics",
    "RegistryNotifier",
    "build_notifier",
    "open_notifier",
    "password_digest",
]
