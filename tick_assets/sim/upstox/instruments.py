"""The simulated Upstox instruments file, built from the simulated Kite universe of the day.

Same instruments, so the same symbols and prices: an NSE equity becomes ``NSE_EQ|<ISIN>``
(a made-up but well-formed ISIN with a valid check digit, stable per exchange_token), the two
indices ``NSE_INDEX|Nifty 50`` and ``NSE_INDEX|Nifty Bank``, NFO contracts ``NSE_FO|<exchange
token>``, CDS/BCD currency futures ``NCD_FO|..``/``BCD_FO|..``. Records carry the fields of the
real JSON file (tick_size in paise, expiry in epoch ms).
"""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime, time

from tick_assets.calendars import IST
from tick_assets.sim.kite.universe import Universe

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
INDEX_NAMES = {  # Kite tradingsymbol -> (Upstox name, trading_symbol, exchange_token)
    "NIFTY 50": ("Nifty 50", "NIFTY", "26000"),
    "NIFTY BANK": ("Nifty Bank", "BANKNIFTY", "26009"),
}
_SEGMENTS = {  # Kite segment -> (Upstox segment, exchange file)
    "NSE": ("NSE_EQ", "NSE"),
    "INDICES": ("NSE_INDEX", "NSE"),
    "NFO-FUT": ("NSE_FO", "NSE"),
    "NFO-OPT": ("NSE_FO", "NSE"),
    "CDS-FUT": ("NCD_FO", "NSE"),
    "BCD-FUT": ("BCD_FO", "BSE"),
}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def isin_check_digit(body: str) -> str:
    """ISO 6166 check digit: letters to numbers (A=10), then Luhn over the digits."""
    digits = "".join(str(_BASE36.index(c)) for c in body)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def sim_isin(exchange_token: int) -> str:
    """A stable, well-formed Indian equity ISIN for a simulated exchange_token."""
    issuer = ""
    n = exchange_token
    for _ in range(4):
        n, r = divmod(n, 36)
        issuer = _BASE36[r] + issuer
    body = f"INE{issuer}01{exchange_token % 100:02d}"[:11]
    return body + isin_check_digit(body)


def _expiry_ms(expiry: date) -> int:
    return int(datetime.combine(expiry, time(15, 30), tzinfo=IST).timestamp() * 1000)


def _fo_symbol(name: str, kind: str, strike: float, expiry: date) -> str:
    when = f"{expiry.day:02d} {MONTHS[expiry.month - 1]} {expiry.year % 100:02d}"
    if kind == "FUT":
        return f"{name} FUT {when}"
    return f"{name} {strike:g} {kind} {when}"


def build_records(universe: Universe) -> list[dict]:
    """One Upstox instruments record per simulated instrument, in universe row order."""
    frame = universe.instruments
    out: list[dict] = []
    for row in frame.iter_rows(named=True):
        segment, exchange = _SEGMENTS[row["segment"]]
        tick_paise = round(float(row["tick_size"] or 0.05) * 100, 4)
        token = int(row["exchange_token"])
        rec: dict = {"segment": segment, "exchange": exchange}
        if segment == "NSE_EQ":
            isin = sim_isin(token)
            rec |= {
                "name": row["name"], "isin": isin, "instrument_type": "EQ",
                "instrument_key": f"NSE_EQ|{isin}", "lot_size": 1, "freeze_quantity": 100000.0,
                "exchange_token": str(token), "tick_size": tick_paise,
                "trading_symbol": row["tradingsymbol"], "short_name": row["tradingsymbol"],
                "security_type": "NORMAL",
            }  # fmt: skip
        elif segment == "NSE_INDEX":
            name, symbol, ex_token = INDEX_NAMES[row["tradingsymbol"]]
            rec |= {
                "name": name, "instrument_type": "INDEX", "instrument_key": f"NSE_INDEX|{name}",
                "exchange_token": ex_token, "trading_symbol": symbol, "lot_size": 0,
                "tick_size": 5.0,
            }  # fmt: skip
        else:
            kind = row["instrument_type"]
            rec |= {
                "name": row["name"], "instrument_type": kind,
                "instrument_key": f"{segment}|{token}", "exchange_token": str(token),
                "lot_size": int(row["lot_size"]), "minimum_lot": int(row["lot_size"]),
                "tick_size": tick_paise, "expiry": _expiry_ms(row["expiry"]),
                "strike_price": float(row["strike"] or 0.0), "weekly": False,
                "underlying_symbol": row["name"],
                "trading_symbol": _fo_symbol(row["name"], kind, float(row["strike"] or 0), row["expiry"]),
                "freeze_quantity": 1800.0, "qty_multiplier": 1.0,
            }  # fmt: skip
        out.append(rec)
    return out


def file_bytes(records: list[dict], exchange: str) -> bytes:
    """The gzipped JSON file for one exchange (or ``complete``)."""
    chosen = (
        records if exchange == "complete" else [r for r in records if r["exchange"] == exchange]
    )
    return gzip.compress(json.dumps(chosen, separators=(",", ":")).encode(), mtime=0)
