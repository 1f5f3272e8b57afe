"""Deterministic synthetic data: every sample is a pure function of (seed, sensor, time).

A device samples on a grid of slots `k` (nominal time k * period). Each slot is either a
reading, a gap-fill row (scalardata only: value NaN, flag 9) or missing (a real gap: no row
anywhere). Outages are decided per hour by a hash, so any window has one exact answer no matter
how it is paged. Everything is vectorised with numpy: a 100,000-row page costs milliseconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.emulator.catalogue import Device, Segment, Sensor
from pipeline.emulator.gaps import GapPlan

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

READING, GAP_FILL, MISSING = 0, 1, 2
_HOUR_MS = 3_600_000
_OUTAGE_RATE = 0.08  # share of hours with an outage
_MAX_OUTAGE_MS = 10 * 60_000


def stream_key(seed: int, name: str) -> int:
    """A stable 64-bit key for (seed, name): Python's hash() is salted per process."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: U64) -> U64:
    # splitmix64 finaliser; uint64 array arithmetic wraps silently, which is what we want.
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniform(key: int, k: I64) -> F64:
    """Uniform [0, 1) draws, one per element of `k`, fully determined by (key, k)."""
    mixed = _mix(k.astype(np.uint64) ^ np.uint64(key))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(slots=True)
class Rows:
    """Rows of one device over a window: times, per-sensor values and flags, row kinds."""

    times: I64  # epoch ms
    values: F64  # shape (n_sensors, n)
    flags: I8  # shape (n_sensors, n)
    kinds: I8  # READING or GAP_FILL

    def __len__(self) -> int:
        return int(self.times.shape[0])


class DeviceSignal:
    """The synthetic timeline of one device under one seed."""

    def __init__(
        self, seed: int, device: Device, outages: list[tuple[int, int]] | None = None
    ) -> None:
        self.seed = seed
        self.device = device
        self._outages = outages or []
        self.period = device.sample_period_ms
        base = f"{device.code}"
        # A constant sub-period offset plus a small jitter keep times irregular yet monotonic.
        self._offset = stream_key(seed, base + ":offset") % (self.period // 2)
        self._jitter_key = stream_key(seed, base + ":jitter")
        self._outage_key = stream_key(seed, base + ":outage")
        self._sensor_keys = [stream_key(seed, f"{base}:{s.code}") for s in device.sensors]

    def slot_times(self, k: I64) -> I64:
        """Actual sample time of each slot."""
        jitter = (uniform(self._jitter_key, k) * (self.period * 0.05)).astype(np.int64)
        return k * self.period + self._offset + jitter

    def slot_kinds(self, k: I64) -> I8:
        """READING, GAP_FILL or MISSING for each slot."""
        nominal = k * self.period
        hour = nominal // _HOUR_MS
        has = uniform(self._outage_key, hour) < _OUTAGE_RATE
        start = hour * _HOUR_MS + (
            uniform(self._outage_key ^ 0x5A5A, hour) * (_HOUR_MS - _MAX_OUTAGE_MS)
        ).astype(np.int64)
        length = 5_000 + (uniform(self._outage_key ^ 0xA5A5, hour) * _MAX_OUTAGE_MS).astype(
            np.int64
        )
        filled = uniform(self._outage_key ^ 0x3C3C, hour) < 0.5
        inside = has & (nominal >= start) & (nominal < start + length)
        kinds = np.full(k.shape, READING, dtype=np.int8)
        kinds[inside & filled] = GAP_FILL
        kinds[inside & ~filled] = MISSING
        if self._outages:
            # Injected outages: ONC answers gap-fill rows (NaN, flag 9) over a period without
            # readings (onc-samples/scalardata_location_BACVP_CTD_page1_NaN_nonstrict.json).
            times = self.slot_times(k)
            for lo, hi in self._outages:
                kinds[(times >= lo) & (times < hi)] = GAP_FILL
        return kinds

    def sensor_values(self, index: int, k: I64) -> tuple[F64, I8]:
        """Values and QAQC flags of sensor `index` at slots `k` (readings only)."""
        sensor: Sensor = self.device.sensors[index]
        key = self._sensor_keys[index]
        t = (k * self.period).astype(np.float64) / 1000.0
        phase = (key % 1000) / 1000.0 * 2 * np.pi
        wave = sensor.amplitude * np.sin(2 * np.pi * t / sensor.period_s + phase)
        daily = 0.3 * sensor.amplitude * np.sin(2 * np.pi * t / 86_400.0 + 2 * phase)
        noise = sensor.noise * (uniform(key, k) * 2.0 - 1.0)
        values = np.round(sensor.base + wave + daily + noise, sensor.decimals)
        draw = uniform(key ^ 0xF1A6, k)
        flags = np.ones(k.shape, dtype=np.int8)
        flags[draw < 0.02] = 2
        flags[draw < 0.01] = 3
        flags[draw < 0.003] = 4
        return values, flags

    def rows(self, start: int, end: int, limit: int, *, gap_fill: bool) -> Rows:
        """Up to `limit` rows with time in [start, end), oldest first."""
        parts: list[Rows] = []
        have = 0
        # The first slot whose jittered time can reach `start`.
        k = max(0, (start - self.period) // self.period)
        last_k = end // self.period + 1
        while have < limit and k <= last_k:
            batch = min(last_k - k + 1, int((limit - have) * 1.15) + 64)
            ks = np.arange(k, k + batch, dtype=np.int64)
            k += batch
            times = self.slot_times(ks)
            kinds = self.slot_kinds(ks)
            keep = (times >= start) & (times < end) & (kinds != MISSING)
            if not gap_fill:
                keep &= kinds == READING
            ks, times, kinds = ks[keep], times[keep], kinds[keep]
            if not len(ks):
                continue
            part = self._materialise(ks, times, kinds)
            parts.append(part)
            have += len(part)
        return _truncate(_concat(parts, len(self.device.sensors)), limit)

    def latest(self, start: int, end: int, *, gap_fill: bool) -> Rows:
        """The last row in [start, end), searching backwards an hour at a time."""
        n_sensors = len(self.device.sensors)
        hi = end
        while hi > start:
            lo = max(start, hi - _HOUR_MS)
            found = self.rows(lo, hi, 10_000_000, gap_fill=gap_fill)
            if len(found):
                last = len(found) - 1
                return Rows(
                    found.times[last:],
                    found.values[:, last:],
                    found.flags[:, last:],
                    found.kinds[last:],
                )
            hi = lo
        return _concat([], n_sensors)

    def _materialise(self, ks: I64, times: I64, kinds: I8) -> Rows:
        n = len(self.device.sensors)
        values = np.empty((n, len(ks)), dtype=np.float64)
        flags = np.empty((n, len(ks)), dtype=np.int8)
        gap = kinds == GAP_FILL
        for i in range(n):
            v, f = self.sensor_values(i, ks)
            v[gap] = np.nan
            f[gap] = 9
            values[i], flags[i] = v, f
        return Rows(times, values, flags, kinds)


def _concat(parts: list[Rows], n_sensors: int) -> Rows:
    if not parts:
        return Rows(
            np.empty(0, dtype=np.int64),
            np.empty((n_sensors, 0), dtype=np.float64),
            np.empty((n_sensors, 0), dtype=np.int8),
            np.empty(0, dtype=np.int8),
        )
    if len(parts) == 1:
        return parts[0]
    return Rows(
        np.concatenate([p.times for p in parts]),
        np.concatenate([p.values for p in parts], axis=1),
        np.concatenate([p.flags for p in parts], axis=1),
        np.concatenate([p.kinds for p in parts]),
    )


def _truncate(rows: Rows, limit: int) -> Rows:
    if len(rows) <= limit:
        return rows
    return Rows(
        rows.times[:limit], rows.values[:, :limit], rows.flags[:, :limit], rows.kinds[:limit]
    )


class Synthesizer:
    """Rows across deployment segments, with one `DeviceSignal` per device (cached)."""

    def __init__(self, seed: int, gaps: GapPlan | None = None) -> None:
        self.seed = seed
        self._gaps = gaps or GapPlan()
        self._signals: dict[str, DeviceSignal] = {}

    def signal(self, device: Device) -> DeviceSignal:
        """The signal of `device` under this seed."""
        sig = self._signals.get(device.code)
        if sig is None:
            outages = self._gaps.outages_of(device.code)
            sig = self._signals[device.code] = DeviceSignal(self.seed, device, outages)
        return sig

    def rows(self, segments: list[Segment], limit: int, *, gap_fill: bool) -> Rows:
        """Up to `limit` rows over the segments in order (segments never overlap)."""
        parts: list[Rows] = []
        have = 0
        n_sensors = len(segments[0].device.sensors) if segments else 0
        for seg in segments:
            if have >= limit:
                break
            part = self.signal(seg.device).rows(seg.start, seg.end, limit - have, gap_fill=gap_fill)
            if len(part):
                parts.append(part)
                have += len(part)
        return _concat(parts, n_sensors)

    def latest(self, segments: list[Segment], *, gap_fill: bool) -> Rows:
        """The last row over the segments."""
        for seg in reversed(segments):
            found = self.signal(seg.device).latest(seg.start, seg.end, gap_fill=gap_fill)
            if len(found):
                return found
        return _concat([], len(segments[0].device.sensors) if segments else 0)


def iso_times(times: I64) -> list[str]:
    """Epoch ms -> API date strings, vectorised."""
    text = np.datetime_as_string(times.astype("datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


def raw_lines(device: Device, rows: Rows) -> list[str]:
    """The raw instrument lines a device would have sent for these readings."""
    if device.raw_kind == "hex":
        # 13-byte BPR frames: counter, pressure period, temperature period, status.
        counter = (rows.times // 1000) & 0xFFFFFFFF
        pres = (rows.values[0] * 1e4).astype(np.int64) & 0xFFFFFFFF
        temp = (rows.values[1] * 1e4).astype(np.int64) & 0xFFFFFFFF
        return [
            f"{c:08X}{p:08X}{t:08X}00"
            for c, p, t in zip(counter.tolist(), pres.tolist(), temp.tolist(), strict=True)
        ]
    # SBE-style ASCII: temperature, conductivity, pressure, salinity.
    cols = rows.values
    return [
        f"# {t:8.4f}, {c:8.5f}, {p:9.3f}, {s:8.4f}"
        for t, c, p, s in zip(
            cols[5 % len(cols)].tolist(),
            cols[0].tolist(),
            cols[2].tolist(),
            cols[3].tolist(),
            strict=True,
        )
    ]
