"""NetCDF classic files (CDF-1, CDF-2) read and grown in place: the header, the records, appends.

Our own small reader of Unidata's "NetCDF Classic Format Specification" (netcdf-c
`docs/file_format_specifications.md`, "The NetCDF Classic Format Specification"):

    header    = magic numrecs dim_list gatt_list var_list
    magic     = 'C' 'D' 'F' (\\x01 classic | \\x02 64-bit offset)
    numrecs   = NON_NEG (4 bytes) | STREAMING (\\xFF\\xFF\\xFF\\xFF)
    dim_list  = ABSENT | NC_DIMENSION nelems [name dim_length ...]   (dim_length 0: record dim)
    att_list  = ABSENT | NC_ATTRIBUTE nelems [name nc_type nelems values-padded-to-4 ...]
    var_list  = ABSENT | NC_VARIABLE nelems [name nelems [dimid ...] vatt_list nc_type vsize
                                            begin ...]
    begin     = 4-byte offset (CDF-1) | 8-byte offset (CDF-2)

Everything is big-endian. Record variables (first dimension the unlimited one) are interleaved:
record i of variable v starts at `begin_v + i * recsize`, where recsize is the sum of the
record variables' vsize (each padded to 4 bytes; a lone record variable is not padded). So
appending records is writing whole records after the last one, then a new numrecs; a
reader that sees the old numrecs never looks at the bytes past it.

Only what onc-pipeline needs: no CDF-5, no streaming numrecs (both are refused, and the
writer rewrites such a file whole).
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

NC_DIMENSION = 0x0A
NC_VARIABLE = 0x0B
NC_ATTRIBUTE = 0x0C
NUMRECS_OFFSET = 4
STREAMING = 0xFFFFFFFF
# nc_type -> numpy big-endian dtype (NC_CHAR as single bytes).
NC_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(">i1"),
    2: np.dtype("S1"),
    3: np.dtype(">i2"),
    4: np.dtype(">i4"),
    5: np.dtype(">f4"),
    6: np.dtype(">f8"),
}
NC_CHAR = 2
# Header bytes read up front; a header larger than this is read again whole.
_FIRST_READ = 1 << 16
# Equal bytes between two changed runs of a header patch up to which they are written as one
# (a write call costs more than a few bytes).
SPAN_GAP = 8


class NotClassicError(ValueError):
    """The file is not a NetCDF classic (CDF-1/CDF-2) file this module can grow in place."""


def _pad4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute as stored: its type, values, and where its nelems and values are."""

    name: str
    nc_type: int
    nelems: int
    nelems_offset: int  # the 4-byte element count just before the values
    value_offset: int

    @property
    def padded_size(self) -> int:
        """Bytes the values take in the header, padding included."""
        return _pad4(self.nelems * NC_TYPES[self.nc_type].itemsize)


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable: dimensions (by index), attributes, type, vsize and begin offset."""

    name: str
    dim_ids: tuple[int, ...]
    attributes: dict[str, Attribute]
    nc_type: int
    vsize: int
    begin: int


@dataclass(slots=True)
class Header:
    """A classic file's header, as parsed."""

    version: int
    numrecs: int
    dims: list[tuple[str, int]]  # (name, length); length 0 is the record dimension
    attributes: dict[str, Attribute]
    variables: dict[str, Variable]
    size: int  # bytes the header takes
    _raw: bytes = field(repr=False, default=b"")

    @property
    def raw(self) -> bytes:
        """The header's bytes as stored (empty for a header built by hand)."""
        return self._raw

    @property
    def record_dim(self) -> int | None:
        """Index of the unlimited dimension, if any."""
        return next((i for i, (_, n) in enumerate(self.dims) if n == 0), None)

    def is_record(self, var: Variable) -> bool:
        """True when `var` grows along the unlimited dimension."""
        return bool(var.dim_ids) and var.dim_ids[0] == self.record_dim

    @property
    def record_variables(self) -> list[Variable]:
        """Record variables in file order."""
        return [v for v in self.variables.values() if self.is_record(v)]

    @property
    def recsize(self) -> int:
        """Bytes per record, all record variables together."""
        rec = self.record_variables
        if len(rec) == 1:
            var = rec[0]
            return int(np.prod([self.dims[d][1] for d in var.dim_ids[1:]], dtype=np.int64)) * (
                NC_TYPES[var.nc_type].itemsize
            )
        return sum(v.vsize for v in rec)

    @property
    def records_begin(self) -> int:
        """Offset of the first record (the lowest begin of a record variable)."""
        return min(v.begin for v in self.record_variables)

    def value(self, attr: Attribute) -> Any:
        """An attribute's value: str for NC_CHAR, else a numpy array (big-endian)."""
        data = self._raw[
            attr.value_offset : attr.value_offset + attr.nelems * NC_TYPES[attr.nc_type].itemsize
        ]
        if attr.nc_type == NC_CHAR:
            return data.decode("utf-8", errors="replace").rstrip("\0")
        return np.frombuffer(data, dtype=NC_TYPES[attr.nc_type])

    def stored(self, offset: int, size: int) -> bytes:
        """The header's bytes at `offset`, as read (fewer past its end)."""
        return self._raw[offset : offset + size]

    def after(self, changes: Sequence[tuple[Attribute, bytes]], appended: int = 0) -> Header:
        """This header as it stands once `changes` are written (global attributes of this
        header, each with its nelems and padded values as `encode_attribute` gives them,
        which keep its size) and `appended` records added: what parsing the new bytes gives,
        without parsing them."""
        raw = bytearray(self._raw)
        attributes = dict(self.attributes)
        for attr, encoded in changes:
            if attributes.get(attr.name) != attr or len(encoded) != 4 + attr.padded_size:
                raise ValueError(f"attribute {attr.name} does not fit the header as it is")
            raw[attr.nelems_offset : attr.nelems_offset + len(encoded)] = encoded
            nelems = int.from_bytes(encoded[:4], "big")
            attributes[attr.name] = replace(attr, nelems=nelems)
        numrecs = self.numrecs + appended
        raw[NUMRECS_OFFSET : NUMRECS_OFFSET + 4] = struct.pack(">I", numrecs)
        return Header(
            self.version, numrecs, self.dims, attributes, self.variables, self.size, bytes(raw)
        )

    def changed_spans(self, offset: int, data: bytes) -> list[tuple[int, bytes]]:
        """The parts of `data`, meant for the header at `offset`, that differ from the header
        as read: (offset, bytes) runs, runs apart by fewer than SPAN_GAP equal bytes joined.

        An append patches a few attributes whose values share most of their bytes with the
        old ones (a timestamp moves inside the latest-harvest line of `history`); writing
        only what changed leaves the file byte for byte the same and writes a tenth of it.
        """
        old = self.stored(offset, len(data))
        if old == data:
            return []
        if len(old) != len(data):
            return [(offset, data)]  # past the bytes read: write it all
        spans: list[tuple[int, bytes]] = []
        start = end = -1
        for i, (a, b) in enumerate(zip(old, data, strict=True)):
            if a == b:
                continue
            if start >= 0 and i - end > SPAN_GAP:
                spans.append((offset + start, data[start:end]))
                start = -1
            if start < 0:
                start = i
            end = i + 1
        if start >= 0:
            spans.append((offset + start, data[start:end]))
        return spans

    def record_dtype(self) -> np.dtype[Any]:
        """A numpy structured dtype of one record: a field per record variable, at its offset
        within the record, shaped by its other dimensions."""
        base = self.records_begin
        names, formats, offsets = [], [], []
        for var in self.record_variables:
            shape = tuple(self.dims[d][1] for d in var.dim_ids[1:])
            names.append(var.name)
            formats.append((NC_TYPES[var.nc_type], shape) if shape else NC_TYPES[var.nc_type])
            offsets.append(var.begin - base)
        return np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": self.recsize}
        )


class _Cursor:
    """Reads big-endian header fields from bytes, tracking the offset."""

    def __init__(self, raw: bytes, version: int) -> None:
        self.raw = raw
        self.at = 0
        self.version = version

    def take(self, n: int) -> bytes:
        end = self.at + n
        if end > len(self.raw):
            raise _ShortError
        chunk = self.raw[self.at : end]
        self.at = end
        return chunk

    def int32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def offset(self) -> int:
        fmt = ">Q" if self.version == 2 else ">I"
        value: int = struct.unpack(fmt, self.take(8 if self.version == 2 else 4))[0]
        return value

    def name(self) -> str:
        n = self.int32()
        text = self.take(_pad4(n))[:n]
        # Interned: every variable's attributes share a few names (units, long_name, ...),
        # and so does every header a process keeps (`netcdf._Described`).
        return sys.intern(text.decode("utf-8"))

    def tag_list(self, tag: int, what: str) -> int:
        found, count = self.int32(), self.int32()
        if found == 0 and count == 0:
            return 0
        if found != tag:
            raise NotClassicError(f"bad {what} list tag {found:#x}")
        return count


class _ShortError(Exception):
    """The header runs past the bytes read so far."""


def read_header(path: Path) -> Header:
    """Parse the header of a classic-format file; NotClassicError when it is another format."""
    with open(path, "rb") as handle:
        raw = handle.read(_FIRST_READ)
        while True:
            try:
                return _parse(raw)
            except _ShortError:
                more = handle.read(len(raw))
                if not more:
                    raise NotClassicError("the header is truncated") from None
                raw += more


def parse_header(raw: bytes) -> Header:
    """Parse the header at the start of `raw` (a whole file, or enough of it)."""
    try:
        return _parse(raw)
    except _ShortError:
        raise NotClassicError("the header is truncated") from None


def _parse(raw: bytes) -> Header:
    if len(raw) < 8 or raw[:3] != b"CDF":
        raise NotClassicError("not a NetCDF classic file (no CDF magic)")
    version = raw[3]
    if version not in (1, 2):
        raise NotClassicError(f"NetCDF classic version {version} is not CDF-1 or CDF-2")
    cur = _Cursor(raw, version)
    cur.take(4)
    numrecs = cur.int32()
    if numrecs == STREAMING:
        raise NotClassicError("numrecs is STREAMING")
    dims = [(cur.name(), cur.int32()) for _ in range(cur.tag_list(NC_DIMENSION, "dimension"))]
    attributes = _attributes(cur)
    variables: dict[str, Variable] = {}
    for _ in range(cur.tag_list(NC_VARIABLE, "variable")):
        name = cur.name()
        dim_ids = tuple(cur.int32() for _ in range(cur.int32()))
        if any(d >= len(dims) for d in dim_ids):
            raise NotClassicError(f"variable {name} names a dimension that does not exist")
        attrs = _attributes(cur)
        nc_type = cur.int32()
        if nc_type not in NC_TYPES:
            raise NotClassicError(f"variable {name} has unknown type {nc_type}")
        vsize = cur.int32()
        begin = cur.offset()
        variables[name] = Variable(name, dim_ids, attrs, nc_type, vsize, begin)
    return Header(version, numrecs, dims, attributes, variables, cur.at, raw[: cur.at])


def _attributes(cur: _Cursor) -> dict[str, Attribute]:
    attrs: dict[str, Attribute] = {}
    for _ in range(cur.tag_list(NC_ATTRIBUTE, "attribute")):
        name = cur.name()
        nc_type = cur.int32()
        if nc_type not in NC_TYPES:
            raise NotClassicError(f"attribute {name} has unknown type {nc_type}")
        nelems_offset = cur.at
        nelems = cur.int32()
        value_offset = cur.at
        cur.take(_pad4(nelems * NC_TYPES[nc_type].itemsize))
        attrs[name] = Attribute(name, nc_type, nelems, nelems_offset, value_offset)
    return attrs


def read_records(path: Path, header: Header) -> npt.NDArray[np.void]:
    """The file's records as a read-only structured array mapped from disk (numrecs of them);
    ValueError when the file is shorter than its header says."""
    count = header.numrecs
    if count == 0:
        return np.zeros(0, dtype=header.record_dtype())
    needed = header.records_begin + count * header.recsize
    if os.path.getsize(path) < needed:
        raise NotClassicError(f"{path} is shorter than its {count} records")
    return np.memmap(
        path, dtype=header.record_dtype(), mode="r", offset=header.records_begin, shape=(count,)
    )


def encode_attribute(attr: Attribute, value: Any) -> bytes | None:
    """`value` encoded as `attr`'s type, padded like the header stores it; None when it is
    another type or would not take the same padded size (the header would have to move)."""
    if attr.nc_type == NC_CHAR:
        if not isinstance(value, str):
            return None
        # netCDF4 writes a text without its trailing NULs (through numpy's str type).
        data = value.rstrip("\0").encode("utf-8")
    else:
        if isinstance(value, str):
            return None
        array = np.atleast_1d(np.asarray(value)).astype(NC_TYPES[attr.nc_type])
        if not np.array_equal(
            array.astype(np.float64),
            np.atleast_1d(np.asarray(value, dtype=np.float64)),
            equal_nan=True,
        ):
            return None
        data = array.tobytes()
    count = len(data) // NC_TYPES[attr.nc_type].itemsize
    if _pad4(len(data)) != attr.padded_size:
        return None
    return struct.pack(">I", count) + data + b"\0" * (_pad4(len(data)) - len(data))


@dataclass(slots=True)
class RecordWrite:
    """What one append changes in a classic file, written in a crash-safe order by
    `write_change`."""

    # Whole records in consecutive blocks, as bytes or views of numpy record arrays (no copy).
    appended: list[bytes | memoryview] = field(default_factory=list)
    appended_count: int = 0
    # (offset of the attribute's nelems field, nelems + padded values).
    attribute_patches: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when nothing would be written."""
        return not (self.appended or self.attribute_patches)


def fixed_part(header: Header, image: bytes | bytearray | memoryview) -> bytearray:
    """The bytes of a file with no records, up to where its records begin: `header`'s bytes
    and each fixed variable's values taken from `image`, zeros everywhere else (padding, the
    header's free space), as a file written on disk with fill off reads there.

    netCDF-C's in-memory files are `malloc`ed: bytes it never writes (padding, with fill
    off) hold whatever the process's memory held, and would differ from run to run."""
    out = bytearray(header.records_begin)
    out[: header.size] = image[: header.size]
    for var in header.variables.values():
        if header.is_record(var):
            continue
        count = int(np.prod([header.dims[d][1] for d in var.dim_ids], dtype=np.int64))
        end = var.begin + count * NC_TYPES[var.nc_type].itemsize
        if end > len(image):
            raise NotClassicError(f"variable {var.name} runs past the end of the file")
        out[var.begin : end] = image[var.begin : end]
    return out


def read_fixed(path: Path, header: Header, name: str) -> npt.NDArray[Any]:
    """The values of a variable that is not a record variable, shaped by its dimensions."""
    var = header.variables[name]
    shape = tuple(header.dims[d][1] for d in var.dim_ids)
    dtype = NC_TYPES[var.nc_type]
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with open(path, "rb") as handle:
        handle.seek(var.begin)
        data = handle.read(size)
    if len(data) != size:
        raise NotClassicError(f"{path} is shorter than variable {name}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def still_as_read(fd: int, header: Header) -> bool:
    """True when the file open at `fd` is still the one `header` was read from: its header
    byte for byte and its records all there (bytes a crashed append left past them aside)."""
    end = header.records_begin + header.numrecs * header.recsize
    if header.raw and os.pread(fd, header.size, 0) != header.raw:
        return False
    return os.fstat(fd).st_size >= end


def write_change(fd: int, header: Header, change: RecordWrite) -> None:
    """Write `change` into the file open at `fd` in an order that keeps every state a reader or
    a crash can see valid: records appended past the current end, then the header's attribute
    values, flushed; only then the new numrecs, flushed again.

    Before numrecs moves, readers see the old record count and the appended bytes lie past
    it unread; a crash there leaves bytes the next append overwrites (and truncates).

    The file must be the one `header` was read from (`still_as_read`): the patches are
    differences from that header, and the records go after its numrecs.
    """
    end = header.records_begin + header.numrecs * header.recsize
    for block in change.appended:
        _pwrite_all(fd, block, end)
        end += block.nbytes if isinstance(block, memoryview) else len(block)
    # Bytes a crashed append left past the records go, so the file is what it says.
    if os.fstat(fd).st_size > end:
        os.ftruncate(fd, end)
    for offset, data in change.attribute_patches:
        _pwrite_all(fd, data, offset)
    os.fdatasync(fd)
    if change.appended_count:
        numrecs = header.numrecs + change.appended_count
        _pwrite_all(fd, struct.pack(">I", numrecs), NUMRECS_OFFSET)
        os.fdatasync(fd)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
