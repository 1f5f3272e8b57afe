"""Types of the C module `_lines.c` (its comments document both functions)."""

from collections.abc import Sequence

from typing_extensions import Buffer

def scalar_lines(
    times: list[str], start: int, end: int, sensors: Sequence[tuple[bytes, bytes, Buffer, Buffer]]
) -> bytes: ...
def value_body(values: Buffer, /) -> bytes | None: ...
