"""The bundled emulator of ONC's Oceans API and the IOOS registry, for tests and demos."""

from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.server import Emulator, serve

__all__ = ["Emulator", "EmulatorConfig", "serve"]
