"""Kite Connect websocket codec: binary market-data frames <-> Arrow tables.

Decoding is vectorised over a whole batch of frames. Frames whose packets all share one length
(what Kite sends for one subscription mode) are grouped by packet count, joined, and read through
one strided numpy view per group, so no Python code runs per packet; only frames that mix packet
kinds are walked packet by packet.
Values equal kiteconnect's `KiteTicker._parse_binary` on the same bytes (segment divisors,
the recomputed `change`, unsigned fields), but timestamps are timezone-aware UTC.

Bad input never raises: each malformed frame or packet is reported in `DecodeResult.rejected`
with its reason, and the rest of the batch decodes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from tick_assets.sources.kite.schema import DECODED_TICK_SCHEMA, DEPTH_LEVELS, MODES

# Packet lengths, which are how Kite tells packet kinds apart.
LTP, INDEX_QUOTE, INDEX_FULL, QUOTE, FULL = 8, 28, 32, 44, 184
PACKET_LENGTHS = (LTP, INDEX_QUOTE, INDEX_FULL, QUOTE, FULL)

# Segments are the low byte of instrument_token (kiteconnect `KiteTicker.EXCHANGE_MAP`).
SEGMENT_CDS, SEGMENT_BCD, SEGMENT_INDICES, SEGMENT_NCO = 3, 6, 9, 12

_U4, _U2 = ">u4", ">u2"
_DEPTH_ENTRY = np.dtype([("quantity", _U4), ("price", _U4), ("orders", _U2), ("pad", "V2")])
_HEAD = [("length", _U2), ("instrument_token", _U4), ("last_price", _U4)]
_INDEX = [("high", _U4), ("low", _U4), ("open", _U4), ("close", _U4), ("price_change", ">i4")]
_QUOTE = [
    ("last_traded_quantity", _U4),
    ("average_traded_price", _U4),
    ("volume_traded", _U4),
    ("total_buy_quantity", _U4),
    ("total_sell_quantity", _U4),
    ("open", _U4),
    ("high", _U4),
    ("low", _U4),
    ("close", _U4),
]
_FULL_TAIL = [
    ("last_trade_time", _U4),
    ("oi", _U4),
    ("oi_day_high", _U4),
    ("oi_day_low", _U4),
    ("exchange_timestamp", _U4),
    ("depth", _DEPTH_ENTRY, (2 * DEPTH_LEVELS,)),
]

#: One record = the 2-byte length prefix plus the packet, so a uniform frame body is an array.
RECORDS: dict[int, np.dtype] = {
    LTP: np.dtype(_HEAD),
    INDEX_QUOTE: np.dtype(_HEAD + _INDEX),
    INDEX_FULL: np.dtype(_HEAD + _INDEX + [("exchange_timestamp", _U4)]),
    QUOTE: np.dtype(_HEAD + _QUOTE),
    FULL: np.dtype(_HEAD + _QUOTE + _FULL_TAIL),
}
assert all(RECORDS[n].itemsize == n + 2 for n in PACKET_LENGTHS)

_MODE_OF_LENGTH = {
    LTP: "ltp",
    INDEX_QUOTE: "quote",
    INDEX_FULL: "full",
    QUOTE: "quote",
    FULL: "full",
}
_PRICE_FIELDS = {"last_price", "average_traded_price", "open", "high", "low", "close"}
_TIME_FIELDS = {"last_trade_time", "exchange_timestamp"}
_MODE_TYPE = DECODED_TICK_SCHEMA.field("mode").type
_MODE_DICTIONARY = pa.array(MODES, pa.string())


@dataclass(frozen=True)
class Rejection:
    """A frame (packet_index None) or one packet of it that could not be decoded, and why."""

    frame_index: int
    packet_index: int | None
    reason: str


@dataclass
class DecodeResult:
    """Ticks plus the accounting of everything else that was in the batch."""

    ticks: pa.Table
    #: For each tick row, the index of the frame it came from (to join receipt times).
    frame_index: np.ndarray
    texts: list[dict] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    frames: int = 0
    heartbeats: int = 0

    @property
    def packets(self) -> int:
        return self.ticks.num_rows

    @property
    def rejected_frames(self) -> int:
        return len({r.frame_index for r in self.rejected if r.packet_index is None})


def divisors(tokens: np.ndarray) -> np.ndarray:
    """Price divisor per instrument token, as kiteconnect applies it."""
    segment = tokens & 0xFF
    out = np.full(tokens.shape, 100.0)
    out[segment == SEGMENT_CDS] = 10_000_000.0
    out[(segment == SEGMENT_BCD) | (segment == SEGMENT_NCO)] = 10_000.0
    return out


def parse_text_message(text: str | bytes) -> dict:
    """Parse a Kite text frame (`{"type": ..., "data": ...}`); raises ValueError if it is not one."""
    message = json.loads(text)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("text frame is JSON but not a Kite message object with a string 'type'")
    return message


@dataclass
class _Group:
    """Frames of `count` packets of one `length`, joined back to back.

    Joined, such frames are periodic, so one strided numpy view reads every packet of every
    frame: no Python code runs per packet. Packets walked out of mixed frames form one-packet
    groups gathered by their byte offsets (`starts`) in the joined walked frames, with
    `within` their position inside the frame they came from.
    """

    length: int
    count: int
    frame_index: np.ndarray
    joined: bytes
    within: np.ndarray | int = 0
    starts: np.ndarray | None = None

    def _view(self, dtype: str, offset: int, shape: tuple[int, ...], strides: tuple) -> np.ndarray:
        period = 2 + self.count * (self.length + 2)
        n_frames = len(self.frame_index)
        return np.ndarray((n_frames, *shape), dtype, self.joined, offset, (period, *strides))

    def uniform(self) -> np.ndarray:
        """Per frame: do all its packet headers really carry `length`?"""
        headers = self._view(_U2, 2, (self.count,), (self.length + 2,))
        return (headers == self.length).all(axis=1)

    def words(self) -> np.ndarray:
        """The packets as a (words, packets) matrix of native uint32, each field one row.

        Every packet length is a multiple of 4 and every field sits on a 4-byte boundary (a
        depth entry's orders count is the high half of its third word), so one byteswapping
        transpose replaces dozens of strided big-endian conversions.
        """
        count, width = self.count, self.length // 4
        if self.starts is None:
            view = self._view(_U4, 4, (count, width), (self.length + 2, 4))
        else:  # gather whole packets: rows of a sliding window, one index per packet
            raw = np.frombuffer(self.joined, dtype=np.uint8)
            packets = sliding_window_view(raw, self.length)[self.starts]
            view = packets.view(_U4).reshape(len(self.starts), 1, width)
        words = np.empty((width, len(view) * count), dtype=np.uint32)
        step = max(1, _TRANSPOSE_BLOCK // count)  # blocks that stay in cache: ~3x a plain copy
        for first in range(0, len(view), step):
            block = np.array(view[first : first + step], dtype=np.uint32).reshape(-1, width)
            words[:, first * count : first * count + len(block)] = block.T
        return words

    def sequence(self, first_packet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arrival order and source frame of each packet, given each frame's first packet."""
        start = first_packet[self.frame_index] + self.within
        seq = (start[:, None] + np.arange(self.count, dtype=np.int64)).reshape(-1)
        return seq, np.repeat(self.frame_index.astype(np.int32), self.count)


def decode_frames(frames: Sequence[bytes | bytearray | memoryview | str]) -> DecodeResult:
    """Decode a batch of websocket messages into ticks in the tick schema.

    Binary messages are market data; `str` messages are Kite text messages (order, error,
    message and unknown types), returned in `texts`. One-byte frames are heartbeats.
    """
    binary = list(frames)
    candidates: defaultdict[int, list[int]] = defaultdict(list)  # count << 16 | length -> frames
    to_walk: list[int] = []
    texts: list[dict] = []
    rejected: list[Rejection] = []
    heartbeats = 0
    for fi, frame in enumerate(frames):
        if type(frame) is not bytes:
            if isinstance(frame, str):
                try:
                    texts.append({"frame_index": fi, **parse_text_message(frame)})
                except ValueError as exc:
                    rejected.append(Rejection(fi, None, f"unparseable text message: {exc}"))
                continue
            frame = binary[fi] = bytes(frame)
        n = len(frame)
        if n > 3:
            count = frame[0] << 8 | frame[1]
            length = frame[2] << 8 | frame[3]
            # The common case, confirmed per group below: `count` packets of one known length.
            if n == 2 + count * (length + 2) and length in RECORDS:
                candidates[count << 16 | length].append(fi)
            else:
                to_walk.append(fi)
        elif n == 1:
            heartbeats += 1
        else:
            rejected.append(Rejection(fi, None, f"{n}-byte frame is too short to hold a packet"))
    groups: list[_Group] = []
    for key, indices in candidates.items():
        count, length = key >> 16, key & 0xFFFF
        group = _Group(length, count, np.asarray(indices), b"".join([binary[i] for i in indices]))
        uniform = group.uniform()
        if not uniform.all():  # same size by coincidence, mixed packets inside: walk those
            to_walk.extend(group.frame_index[~uniform].tolist())
            kept = group.frame_index[uniform]
            if not len(kept):
                continue
            group = _Group(length, count, kept, b"".join([binary[i] for i in kept]))
        groups.append(group)
    groups += _walk_frames(binary, sorted(to_walk), rejected)
    rejected.sort(key=lambda r: (r.frame_index, -1 if r.packet_index is None else r.packet_index))
    ticks, frame_index = _assemble(groups, len(binary))
    return DecodeResult(ticks, frame_index, texts, rejected, len(binary), heartbeats)


def _walk_frames(binary: list, indices: list[int], rejected: list[Rejection]) -> list[_Group]:
    """Split frames whose packets differ in length; one whose framing is broken is rejected whole.

    All such frames are walked in lockstep: step k reads the k-th length header of every frame
    at once, so numpy runs once per packet position, not once per packet. The packets are
    then gathered per length from the joined frames.
    """
    if not indices:
        return []
    frames = [binary[i] for i in indices]
    joined = b"".join(frames)
    raw = np.frombuffer(joined, dtype=np.uint8)

    def u16(at: np.ndarray) -> np.ndarray:  # big-endian uint16 at each byte offset
        return raw[at].astype(np.int64) << 8 | raw[at + 1]

    size = np.array([len(f) for f in frames], dtype=np.int64)
    end = np.cumsum(size)
    base = end - size
    count = u16(base)
    ok = np.ones(len(frames), dtype=bool)

    def reject(where: np.ndarray, reason) -> None:
        for f in np.flatnonzero(where):
            rejected.append(Rejection(indices[f], None, reason(f)))
        ok[where] = False

    reject(count == 0, lambda f: f"frame of {size[f]} bytes declares zero packets")
    reject(
        ok & (2 + 2 * count > size),  # each packet needs at least its 2-byte length header
        lambda f: f"frame declares {count[f]} packets but holds only {size[f]} bytes",
    )
    pos = base + 2
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # starts, lengths, frames, k
    for step in range(int(count[ok].max(initial=0))):
        active = np.flatnonzero(ok & (step < count))
        if not len(active):
            break
        here = pos[active]
        headless = np.zeros(len(frames), dtype=bool)
        headless[active[here + 2 > end[active]]] = True
        reject(
            headless,
            lambda f, step=step: (
                f"truncated: packet {step + 1} of {count[f]} has no length header "
                f"(frame is {size[f]} bytes)"
            ),
        )
        active = active[ok[active]]
        here = pos[active]
        length = u16(here)
        overrun = np.zeros(len(frames), dtype=bool)
        overrun[active[here + 2 + length > end[active]]] = True
        if overrun.any():
            at = dict(zip(active.tolist(), (here - base[active]).tolist(), strict=True))
            said = dict(zip(active.tolist(), length.tolist(), strict=True))
            reject(
                overrun,
                lambda f, step=step, at=at, said=said: (
                    f"packet {step + 1} of {count[f]} declares {said[f]} bytes at offset "
                    f"{at[f]}, overrunning the {size[f]}-byte frame"
                ),
            )
            keep = ok[active]
            active, here, length = active[keep], here[keep], length[keep]
        found.append((here + 2, length, active, step))
        pos[active] = here + 2 + length
    reject(
        ok & (pos != end), lambda f: f"{end[f] - pos[f]} trailing bytes after {count[f]} packets"
    )
    if not found:
        return []
    starts = np.concatenate([f[0] for f in found])
    lengths = np.concatenate([f[1] for f in found])
    frame = np.concatenate([f[2] for f in found])
    step = np.concatenate([np.full(len(f[0]), f[3]) for f in found])
    accepted = ok[frame]
    unknown = accepted & ~np.isin(lengths, PACKET_LENGTHS)
    known_list = ", ".join(map(str, PACKET_LENGTHS))
    for f, pi, n in zip(frame[unknown], step[unknown], lengths[unknown], strict=True):
        reason = f"unknown packet length {n} (known: {known_list})"
        rejected.append(Rejection(indices[f], int(pi), reason))
    take = accepted & ~unknown
    starts, lengths, frame, step = starts[take], lengths[take], frame[take], step[take]
    # position of each accepted packet among its frame's accepted packets
    order = np.lexsort((step, frame))
    by_frame = frame[order]
    within = np.empty(len(order), dtype=np.int64)
    within[order] = np.arange(len(order)) - np.searchsorted(by_frame, by_frame, side="left")
    frame_index = np.asarray(indices, dtype=np.int64)[frame]
    return [
        _Group(
            int(n), 1, frame_index[lengths == n], joined, within[lengths == n], starts[lengths == n]
        )
        for n in np.unique(lengths)
    ]


def _assemble(groups: list[_Group], n_frames: int) -> tuple[pa.Table, np.ndarray]:
    if not groups:
        return DECODED_TICK_SCHEMA.empty_table(), np.empty(0, dtype=np.int32)
    per_frame = np.zeros(n_frames, dtype=np.int64)
    for g in groups:
        per_frame += np.bincount(g.frame_index, minlength=n_frames) * g.count
    first_packet = np.cumsum(per_frame) - per_frame
    tables, seqs, frames = [], [], []
    for length in sorted({g.length for g in groups}):
        of_length = [g for g in groups if g.length == length]
        words = [g.words() for g in of_length]
        tables.append(_decode_words(np.concatenate(words, axis=1), length))
        for g in of_length:
            seq, frame = g.sequence(first_packet)
            seqs.append(seq)
            frames.append(frame)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    seq, frame_index = np.concatenate(seqs), np.concatenate(frames)
    if not bool((np.diff(seq) > 0).all()):
        order = np.empty(len(seq), dtype=np.int64)
        order[seq] = np.arange(len(seq), dtype=np.int64)
        table = table.take(pa.array(order))
        frame_index = frame_index[order]
    return table, frame_index


def _word_index(length: int) -> dict[str, int]:
    names = [n for n in RECORDS[length].names if n not in ("length", "depth")]
    return {name: i for i, name in enumerate(names)}


_TRANSPOSE_BLOCK = 512
_WORDS = {length: _word_index(length) for length in PACKET_LENGTHS}
_DEPTH_WORD = len(_WORDS[FULL])  # first word of the depth entries in a full packet


def _decode_words(words: np.ndarray, length: int) -> pa.Table:
    n = words.shape[1]
    token = words[0]
    divisor = divisors(token)
    mode = pa.DictionaryArray.from_arrays(
        pa.array(np.full(n, MODES.index(_MODE_OF_LENGTH[length]), dtype=np.int8)),
        _MODE_DICTIONARY,
    )
    columns: dict[str, pa.Array] = {
        "instrument_token": pa.array(token),
        "mode": mode,
        "tradable": pa.array((token & 0xFF) != SEGMENT_INDICES),
    }
    for name, i in _WORDS[length].items():
        if name in ("instrument_token", "price_change"):
            continue
        if name in _PRICE_FIELDS:
            columns[name] = pa.array(words[i] / divisor)
        elif name in _TIME_FIELDS:
            ns = words[i].astype(np.int64) * 1_000_000_000
            columns[name] = pa.array(ns.view("datetime64[ns]")).cast(pa.timestamp("ns", tz="UTC"))
        else:
            columns[name] = pa.array(words[i])
    if length != LTP:
        last, close = words[1] / divisor, words[_WORDS[length]["close"]] / divisor
        change = np.zeros(n)
        np.divide((last - close) * 100, close, out=change, where=close != 0)
        columns["change"] = pa.array(change)
    if length == FULL:
        for side, offset in (("bid", 0), ("ask", DEPTH_LEVELS)):
            for level in range(DEPTH_LEVELS):
                w = _DEPTH_WORD + 3 * (offset + level)
                columns[f"{side}_quantity_{level + 1}"] = pa.array(words[w])
                columns[f"{side}_price_{level + 1}"] = pa.array(words[w + 1] / divisor)
                columns[f"{side}_orders_{level + 1}"] = pa.array(
                    (words[w + 2] >> 16).astype(np.uint16)
                )
    arrays = [
        columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in DECODED_TICK_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=DECODED_TICK_SCHEMA)


# --- encoding (the simulator's side) -------------------------------------------------------


def _column(ticks: pa.Table | Mapping[str, object], name: str, n: int) -> np.ndarray:
    """A column as numpy with nulls as 0; timestamps as epoch nanoseconds."""
    if isinstance(ticks, pa.Table):
        if name not in ticks.column_names:
            return np.zeros(n)
        col = ticks.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        return pc.fill_null(col, 0).to_numpy()
    value = ticks.get(name)
    if value is None:
        return np.zeros(n)
    arr = np.asarray(value)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").astype(np.int64)
    return np.broadcast_to(arr, (n,))


def _modes(ticks: pa.Table | Mapping[str, object], n: int) -> np.ndarray:
    if isinstance(ticks, pa.Table):
        col = ticks.column("mode").combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        values = np.asarray(col.to_pylist(), dtype=object)
    else:
        values = np.broadcast_to(np.asarray(ticks["mode"], dtype=object), (n,))
    codes = np.full(n, -1, dtype=np.int8)
    for code, mode in enumerate(MODES):
        codes[values == mode] = code
    if (codes < 0).any():
        bad = values[codes < 0][0]
        raise ValueError(f"mode {bad!r} is not one of {MODES}; fix the 'mode' column")
    return codes


def _to_wire(values: np.ndarray, name: str, dtype: str = "uint32") -> np.ndarray:
    limits = np.iinfo(dtype)
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        raise ValueError(f"column {name!r} has values outside the wire range of {dtype}")
    return values.astype(dtype)


def encode_frames(
    ticks: pa.Table | Mapping[str, object], packets_per_frame: int = 200
) -> list[bytes]:
    """Encode ticks (tick-schema columns) into Kite binary frames; the inverse of `decode_frames`.

    `ticks` is an Arrow table or a mapping of column name to numpy array (scalars broadcast),
    which is what the simulator's vectorised market hands over. The `mode` of each row and
    whether its token is an index (segment 9) choose the packet kind.
    """
    if packets_per_frame < 1 or packets_per_frame > 0xFFFF:
        raise ValueError(f"packets_per_frame={packets_per_frame} must be within 1..65535")
    n = (
        ticks.num_rows
        if isinstance(ticks, pa.Table)
        else len(np.asarray(ticks["instrument_token"]))
    )
    if n == 0:
        return []
    token = _to_wire(_column(ticks, "instrument_token", n), "instrument_token")
    divisor = divisors(token)
    is_index = (token & 0xFF) == SEGMENT_INDICES
    mode = _modes(ticks, n)
    lengths = np.select(
        [mode == 0, (mode == 1) & is_index, mode == 1, is_index],
        [LTP, INDEX_QUOTE, QUOTE, INDEX_FULL],
        FULL,
    )
    kinds = np.unique(lengths)
    sizes = lengths + 2
    ends = np.cumsum(sizes)
    body = np.empty(int(ends[-1]), dtype=np.uint8)
    for length in kinds:
        mask = lengths == length
        rec = _encode_records(ticks, int(length), mask, token[mask], divisor[mask])
        raw = rec.view(np.uint8).reshape(-1, length + 2)
        if len(kinds) == 1:
            body[:] = raw.reshape(-1)
        else:
            starts = (ends - sizes)[mask]
            body[starts[:, None] + np.arange(length + 2)] = raw
    frames = []
    for first in range(0, n, packets_per_frame):
        last = min(first + packets_per_frame, n)
        start = int(ends[first - 1]) if first else 0
        frames.append(
            (last - first).to_bytes(2, "big") + body[start : int(ends[last - 1])].tobytes()
        )
    return frames


def _encode_records(
    ticks: pa.Table | Mapping[str, object],
    length: int,
    mask: np.ndarray,
    token: np.ndarray,
    divisor: np.ndarray,
) -> np.ndarray:
    rec = np.zeros(int(mask.sum()), dtype=RECORDS[length])
    rec["length"] = length
    rec["instrument_token"] = token
    n = len(mask)

    def price(name: str) -> np.ndarray:
        return _to_wire(np.rint(_column(ticks, name, n)[mask] * divisor), name)

    for name in rec.dtype.names:
        if name in ("length", "instrument_token", "depth"):
            continue
        if name == "price_change":
            last, close = price("last_price").astype(np.int64), price("close").astype(np.int64)
            rec[name] = np.clip(last - close, -(2**31), 2**31 - 1).astype(np.int32)
        elif name in _PRICE_FIELDS:
            rec[name] = price(name)
        elif name in _TIME_FIELDS:
            seconds = _column(ticks, name, n)[mask].astype(np.int64) // 1_000_000_000
            rec[name] = _to_wire(seconds, name)
        else:
            rec[name] = _to_wire(_column(ticks, name, n)[mask], name)
    if "depth" in rec.dtype.names:
        for side, offset in (("bid", 0), ("ask", DEPTH_LEVELS)):
            for level in range(1, DEPTH_LEVELS + 1):
                entry = rec["depth"][:, offset + level - 1]
                entry["price"] = price(f"{side}_price_{level}")
                qty = _column(ticks, f"{side}_quantity_{level}", n)[mask]
                entry["quantity"] = _to_wire(qty, f"{side}_quantity_{level}")
                orders = _column(ticks, f"{side}_orders_{level}", n)[mask]
                entry["orders"] = _to_wire(orders, f"{side}_orders_{level}", "uint16")
    return rec
