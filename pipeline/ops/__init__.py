"""Operations: the health and metrics server, sd_notify, and the Prometheus metrics."""

from pipeline.ops.health import HealthReport, LoopMonitor
from pipeline.ops.metrics import PipelineMetrics
from pipeline.ops.readiness import OpsSources, Readiness, Snapshot
from pipeline.ops.runtime import OpsRuntime
from pipeline.ops.server import OpsServer
from pipeline.ops.systemd import SystemdNotifier

__all__ = [
    "HealthReport",
    "LoopMonitor",
    "OpsRuntime",
    "OpsServer",
    "OpsSources",
    "PipelineMetrics",
    "Readiness",
    "Snapshot",
    "SystemdNotifier",
]
