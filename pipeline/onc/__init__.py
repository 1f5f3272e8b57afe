"""The async Oceans API client: the only code of onc-pipeline that talks to ONC."""

from pipeline.onc.client import OncClient
from pipeline.onc.download import DownloadedFile
from pipeline.onc.errors import (
    OncIntegrityError,
    OncMalformedReply,
    OncNetworkError,
    OncProductFailedError,
    OncProductGoneError,
    OncProductTimeout,
    OncSchemaError,
)
from pipeline.onc.metrics import NoopMetrics, OncMetrics
from pipeline.onc.models import (
    ArchiveFileInfo,
    ArchiveListPage,
    ArchiveQuery,
    AvailabilityQuery,
    DataSource,
    Deployment,
    Device,
    DeviceCategory,
    Location,
    ProductAvailability,
    ProductOrder,
    ProductRequest,
    ProductRun,
    Property,
    RawPage,
    RawQuery,
    RunState,
    ScalarPage,
    ScalarQuery,
    ScalarSeries,
)
from pipeline.onc.options import ClientOptions
from pipeline.onc.politeness import LocalLimiter, RequestLimiter
from pipeline.onc.products import ProductDriver, ProductFile, ProductResult

__all__ = [
    "ArchiveFileInfo",
    "ArchiveListPage",
    "ArchiveQuery",
    "AvailabilityQuery",
    "ClientOptions",
    "DataSource",
    "Deployment",
    "Device",
    "DeviceCategory",
    "DownloadedFile",
    "LocalLimiter",
    "Location",
    "NoopMetrics",
    "OncClient",
    "OncIntegrityError",
    "OncMalformedReply",
    "OncMetrics",
    "OncNetworkError",
    "OncProductFailedError",
    "OncProductGoneError",
    "OncProductTimeout",
    "OncSchemaError",
    "ProductAvailability",
    "ProductDriver",
    "ProductFile",
    "ProductOrder",
    "ProductRequest",
    "ProductResult",
    "ProductRun",
    "Property",
    "RawPage",
    "RawQuery",
    "RequestLimiter",
    "RunState",
    "ScalarPage",
    "ScalarQuery",
    "ScalarSeries",
]
