"""Types of the C module `_lines.c` (its comments document each function)."""

from collections.abc import Sequence
from typing import Any, TypeAlias

from numpy.typing import NDArray
from typing_extensions import Buffer

# What the functions read through the buffer protocol: arrays of `array`, numpy, bytes.
BufferLike: TypeAlias = Buffer | NDArray[Any]

def scalar_lines(
    times: list[str],
    start: int,
    end: int,
    sensors: Sequence[tuple[bytes, bytes, BufferLike, BufferLike]],
) -> bytes: ...
def value_body(values: BufferLike, /) -> bytes | None: ...
def csv_lines(
    times: BufferLike,
    width: int,
    stations: Sequence[bytes],
    station_rows: BufferLike,
    sensors: Sequence[tuple[bytes, bytes, BufferLike, BufferLike]],
) -> bytes: ...
