"""The tick schema shared by the decoder, the journal and the `kite/ticks` lake dataset.

Column names follow kiteconnect v4 (`KiteTicker._parse_binary`); depth is flattened so a tick
is one flat row that Parquet and polars handle without nested types.
"""

from __future__ import annotations

import pyarrow as pa

MODES = ("ltp", "quote", "full")
DEPTH_LEVELS = 5

UTC_NS = pa.timestamp("ns", tz="UTC")
PRICE = pa.float64()
QTY = pa.uint32()


def _depth_fields() -> list[pa.Field]:
    fields: list[pa.Field] = []
    for side in ("bid", "ask"):
        fields += [pa.field(f"{side}_price_{i}", PRICE) for i in range(1, DEPTH_LEVELS + 1)]
        fields += [pa.field(f"{side}_quantity_{i}", QTY) for i in range(1, DEPTH_LEVELS + 1)]
        fields += [pa.field(f"{side}_orders_{i}", pa.uint16()) for i in range(1, DEPTH_LEVELS + 1)]
    return fields


#: What `decode_frames` returns: one row per packet, in arrival order.
DECODED_TICK_SCHEMA = pa.schema(
    [
        pa.field("instrument_token", pa.uint32(), nullable=False),
        pa.field("mode", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("tradable", pa.bool_(), nullable=False),
        pa.field("last_price", PRICE, nullable=False),
        pa.field("last_traded_quantity", QTY),
        pa.field("average_traded_price", PRICE),
        pa.field("volume_traded", QTY),
        pa.field("total_buy_quantity", QTY),
        pa.field("total_sell_quantity", QTY),
        pa.field("open", PRICE),
        pa.field("high", PRICE),
        pa.field("low", PRICE),
        pa.field("close", PRICE),
        pa.field("change", PRICE),
        pa.field("last_trade_time", UTC_NS),
        pa.field("oi", QTY),
        pa.field("oi_day_high", QTY),
        pa.field("oi_day_low", QTY),
        pa.field("exchange_timestamp", UTC_NS),
        *_depth_fields(),
    ]
)

#: The journal and lake add when and on which connection each packet arrived.
TICK_SCHEMA = DECODED_TICK_SCHEMA.append(pa.field("received_at", UTC_NS, nullable=False)).append(
    pa.field("connection", pa.string(), nullable=False)
)

TICK_COLUMNS = tuple(TICK_SCHEMA.names)
