"""The Kite ticker websocket of the simulator.

kiteconnect's own KiteTicker runs in a subprocess (Twisted's reactor cannot be restarted in
one process); the low-level checks (limits, LVC, heartbeats, faults, accounting, rate) use the
`websockets` client so every frame is visible.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import date
from datetime import time as dtime

import numpy as np
import pytest
import requests
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token, ws_url
from tick_assets.sources.kite.codec import decode_frames
from tick_assets.sources.kite.limits import SUBSCRIBE_LIMIT_ERROR

DAY = date(2026, 11, 20)
APP = SIM_APPS["indices"]
OTHER = SIM_APPS["nifty500"]
INFY, RELIANCE, NIFTY, BANKNIFTY = 408065, 738561, 256265, 260105

KITETICKER_CLIENT = r"""
import json, sys
from kiteconnect import KiteTicker
from twisted.internet import reactor

api_key, access_token, root, wanted, tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
kws = KiteTicker(api_key, access_token, root=root, reconnect_max_tries=1)
seen = [0]

def stop():
    if reactor.running:
        reactor.stop()

def on_ticks(ws, ticks):
    for t in ticks:
        print(json.dumps({"tick": t}, default=str), flush=True)
    seen[0] += len(ticks)
    if seen[0] >= wanted:
        stop()

def on_connect(ws, response):
    ws.subscribe(tokens)
    ws.set_mode(ws.MODE_FULL, tokens)

def on_error(ws, code, reason):
    print(json.dumps({"error": code, "reason": str(reason)}), flush=True)

def on_close(ws, code, reason):
    stop()

kws.on_ticks, kws.on_connect, kws.on_error, kws.on_close = on_ticks, on_connect, on_error, on_close
reactor.callLater(60, stop)
kws.connect()
"""


@pytest.fixture(scope="module")
def server():
    with SimServer(day=DAY, rate=3000, speed=10) as srv:
        yield srv


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:
    return {app.name: access_token(server.endpoints, app) for app in (APP, OTHER)}


def _url(server, tokens, app=APP) -> str:
    return ws_url(server.endpoints, app, tokens[app.name])


def _token_of(server, exchange: str, symbol: str) -> int:
    frame = server.kite.universe.instruments
    row = frame.filter((frame["exchange"] == exchange) & (frame["tradingsymbol"] == symbol))
    return int(row["instrument_token"][0])


async def _collect(ws, seconds: float) -> list[bytes | str]:
    """Every message that arrives within `seconds`."""
    out: list[bytes | str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
    return out


def _packets(frames) -> int:
    return sum(f[0] << 8 | f[1] for f in frames if isinstance(f, bytes) and len(f) > 1)


def _lengths(frame: bytes) -> list[int]:
    """Packet lengths in a binary frame, walked by their 2-byte headers."""
    lengths, pos = [], 2
    for _ in range(frame[0] << 8 | frame[1]):
        lengths.append(frame[pos] << 8 | frame[pos + 1])
        pos += 2 + lengths[-1]
    return lengths


def _connect(url: str):
    return websockets.connect(url, max_size=None, ping_interval=None, close_timeout=1)


def _live_connection(server, api_key: str) -> int:
    live = [
        c for c in server.connection_stats() if c["api_key"] == api_key and c["closed_at"] is None
    ]
    assert live, "no live connection on the simulator"
    return max(c["id"] for c in live)


# --- kiteconnect's KiteTicker --------------------------------------------------------------


def _run_kiteticker(server, token: str, wanted: int, instruments: list[int]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", KITETICKER_CLIENT, APP.api_key, token, server.endpoints["kite_ws"],
         str(wanted), json.dumps(instruments)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_kiteticker_connects_subscribes_full_and_parses_ticks(server, tokens):
    cds = _token_of(server, "CDS", "USDINR26NOVFUT")
    bcd = _token_of(server, "BCD", "USDINR26NOVFUT")
    fut = _token_of(server, "NFO", "NIFTY26DECFUT")
    wanted = [NIFTY, INFY, RELIANCE, cds, bcd, fut]
    lines = _run_kiteticker(server, tokens[APP.name], 60, wanted)
    ticks = [line["tick"] for line in lines if "tick" in line]
    assert len(ticks) >= 60, lines[-5:]
    full = [t for t in ticks if t["mode"] == "full"]
    assert {t["instrument_token"] for t in full} == set(wanted)
    index = next(t for t in full if t["instrument_token"] == NIFTY)
    assert index["tradable"] is False and "exchange_timestamp" in index and "depth" not in index
    infy = next(t for t in full if t["instrument_token"] == INFY)
    assert infy["tradable"] is True and len(infy["depth"]["buy"]) == len(infy["depth"]["sell"]) == 5
    assert (
        infy["depth"]["buy"][0]["price"] <= infy["last_price"] <= infy["depth"]["sell"][0]["price"]
    )
    assert (
        infy["volume_traded"] > 0
        and infy["ohlc"]["low"] <= infy["last_price"] <= infy["ohlc"]["high"]
    )
    # kiteconnect's divisors: CDS 1e7 and BCD 1e4 give the same rupee price for USDINR
    universe = server.kite.universe
    for token in (cds, bcd, INFY, fut):
        price = next(t["last_price"] for t in full if t["instrument_token"] == token)
        close = float(universe.prev_close[int(universe.rows_of(np.array([token]))[0])])
        assert abs(price / close - 1) < 0.1, (token, price, close)


def test_kiteticker_bad_token_reports_403(server):
    lines = _run_kiteticker(server, "not-a-token", 1, [INFY])
    errors = [line["reason"] for line in lines if "error" in line]
    assert errors and "403 - Forbidden" in errors[0]


# --- websocket limits and behaviour ----------------------------------------------------------


def test_upgrade_is_refused_for_bad_or_expired_tokens(server):
    async def attempt(url):
        with pytest.raises(InvalidStatus) as err:
            async with _connect(url):
                pass
        return err.value.response.status_code

    assert asyncio.run(attempt(ws_url(server.endpoints, APP, "wrong"))) == 403
    token = access_token(server.endpoints, OTHER)
    assert server.expire_access_tokens(token) == 1
    assert asyncio.run(attempt(ws_url(server.endpoints, OTHER, token))) == 403


def test_more_than_3000_instruments_is_an_error_text_and_the_socket_stays_up(server, tokens):
    known = [int(t) for t in server.kite.universe.tokens]
    filler = list(range(1, 3001 - len(known) + 1))  # unlisted tokens still count to the limit

    async def run():
        async with _connect(_url(server, tokens)) as ws:
            await ws.send(json.dumps({"a": "subscribe", "v": known + filler[:-1]}))  # 3000
            first = await _collect(ws, 1.0)
            assert not [m for m in first if isinstance(m, str)]
            lvc = decode_frames(first).ticks.column("instrument_token").to_pylist()[: len(known)]
            assert sorted(lvc) == sorted(known)  # first, a cached last tick for every listed token
            await ws.send(json.dumps({"a": "subscribe", "v": filler[-1:]}))  # the 3001st
            reply = await asyncio.wait_for(ws.recv(), 5)
            while not isinstance(reply, str):
                reply = await asyncio.wait_for(ws.recv(), 5)
            assert json.loads(reply) == {"type": "error", "data": SUBSCRIBE_LIMIT_ERROR}
            await ws.send(json.dumps({"a": "unsubscribe", "v": filler[:5]}))
            await ws.send(json.dumps({"a": "subscribe", "v": filler[-1:]}))  # room again
            later = await _collect(ws, 1.0)
            assert not [m for m in later if isinstance(m, str)]
            await ws.ping()

    asyncio.run(run())


def test_a_fourth_connection_per_api_key_is_refused(server, tokens):
    async def run():
        url = _url(server, tokens)
        async with _connect(url), _connect(url), _connect(url) as third:
            with pytest.raises(InvalidStatus) as err:
                async with _connect(url):
                    pass
            assert err.value.response.status_code == 429
            async with _connect(_url(server, tokens, OTHER)):  # other keys are unaffected
                pass
            await third.close()
            await asyncio.sleep(0.2)
            async with _connect(url):  # a slot is free again
                pass

    asyncio.run(run())


def test_lvc_on_subscribe_and_heartbeats_when_idle():
    """Before the open nothing trades: subscribe gets the cached last ticks, then heartbeats."""
    with SimServer(day=DAY, rate=3000, speed=1, start=dtime(9, 0)) as srv:
        token = access_token(srv.endpoints, APP)
        universe = srv.kite.universe

        async def run():
            async with _connect(ws_url(srv.endpoints, APP, token)) as ws:
                idle = await _collect(ws, 2.5)
                assert idle.count(b"\x00") >= 2 and set(idle) == {b"\x00"}
                await ws.send(
                    json.dumps({"a": "subscribe", "v": [INFY, RELIANCE, NIFTY, BANKNIFTY]})
                )
                lvc = await asyncio.wait_for(ws.recv(), 5)
                decoded = decode_frames([lvc]).ticks.to_pylist()
                by_token = {t["instrument_token"]: t for t in decoded}
                assert set(by_token) == {INFY, RELIANCE, NIFTY, BANKNIFTY}
                assert {t["mode"] for t in decoded} == {"quote"}  # the default after subscribe
                for tok, tick in by_token.items():
                    row = int(universe.rows_of(np.array([tok]))[0])
                    assert tick["last_price"] == pytest.approx(float(universe.prev_close[row]))
                assert sorted(_lengths(lvc)) == [28, 28, 44, 44]  # index and equity quotes
                after = await _collect(ws, 2.5)
                assert after and set(after) == {b"\x00"}  # market closed: heartbeats only
                await ws.send(json.dumps({"a": "mode", "v": ["ltp", [INFY]]}))
                ltp = await asyncio.wait_for(ws.recv(), 5)
                assert ltp[:4] == b"\x00\x01\x00\x08"  # one 8-byte LTP packet

        asyncio.run(run())


def test_ticks_follow_subscription_and_mode(server, tokens):
    async def run():
        async with _connect(_url(server, tokens)) as ws:
            subscribed = [int(t) for t in server.kite.universe.tokens[:40]]
            await ws.send(json.dumps({"a": "subscribe", "v": subscribed}))
            await ws.send(json.dumps({"a": "mode", "v": ["full", subscribed[:20]]}))
            await ws.send(json.dumps({"a": "mode", "v": ["ltp", subscribed[20:30]]}))
            frames = await _collect(ws, 2.0)
            sim_now = server.kite.clock.now()
            await ws.send(json.dumps({"a": "unsubscribe", "v": subscribed[30:]}))
            await _collect(ws, 0.3)
            tail = await _collect(ws, 1.5)
            return frames, tail, subscribed, sim_now

    frames, tail, subscribed, sim_now = asyncio.run(run())
    ticks = decode_frames(frames).ticks.to_pylist()
    assert len(ticks) > 100
    # exchange timestamps follow the simulated clock (speed 10: 2 s of wall time = 20 s)
    stamps = [t["exchange_timestamp"].timestamp() for t in ticks if t["mode"] == "full"]
    assert sim_now - 40 < max(stamps) <= sim_now + 1 and min(stamps) > sim_now - 60
    assert {t["instrument_token"] for t in ticks} <= set(subscribed)
    later = [t for t in ticks[len(subscribed) :] if t["instrument_token"] in subscribed]
    mode_of = {t["instrument_token"]: t["mode"] for t in later}
    assert all(mode_of.get(t, "full") == "full" for t in subscribed[:20] if t & 0xFF != 9)
    assert all(mode_of.get(t, "ltp") == "ltp" for t in subscribed[20:30])
    last_ltp: dict[int, float] = {}
    for t in ticks:
        if t["mode"] == "ltp" and t["instrument_token"] in last_ltp:
            assert t["last_price"] != last_ltp[t["instrument_token"]]  # ltp ticks only on change
        if t["mode"] == "ltp":
            last_ltp[t["instrument_token"]] = t["last_price"]
    tail_tokens = {t["instrument_token"] for t in decode_frames(tail).ticks.to_pylist()}
    assert tail_tokens and not tail_tokens & set(subscribed[30:])


# --- faults and accounting ---------------------------------------------------------------------


def test_drop_stall_and_malformed_faults(server, tokens):
    control = server.endpoints["kite_control"]

    async def run():
        async with _connect(_url(server, tokens, OTHER)) as ws:
            await ws.send(json.dumps({"a": "subscribe", "v": [INFY, RELIANCE, NIFTY]}))
            assert await _collect(ws, 0.5)
            conn = _live_connection(server, OTHER.api_key)

            requests.post(
                f"{control}/faults",
                json={"action": "stall", "seconds": 2.0, "connection": conn},
                timeout=10,
            )
            await _collect(ws, 0.2)  # whatever was already in flight
            start = time.monotonic()
            first = await asyncio.wait_for(ws.recv(), 10)
            assert time.monotonic() - start > 1.5 and first  # silent: not even heartbeats
            assert ws.state.name == "OPEN"

            hit = requests.post(
                f"{control}/faults", json={"action": "malformed", "count": 5}, timeout=10
            ).json()
            assert conn in hit["connections"]
            frames = await _collect(ws, 1.0)
            result = decode_frames(frames)
            assert len({r.frame_index for r in result.rejected}) == 5  # each one is refused
            assert result.ticks.num_rows > 0  # good frames around them still decode

            server.drop_connections(connection=conn)
            with pytest.raises(ConnectionClosed) as err:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert err.value.rcvd is None  # no close frame: the TCP connection was cut
        stats = {c["id"]: c for c in server.connection_stats()}
        assert stats[conn]["close_reason"] == "fault: drop"
        assert stats[conn]["malformed_frames_sent"] == 5 and stats[conn]["packets_suppressed"] > 0

    asyncio.run(run())


def test_server_counters_match_what_the_client_received(server, tokens):
    async def run():
        async with _connect(_url(server, tokens)) as ws:
            await ws.send(
                json.dumps(
                    {"a": "subscribe", "v": [int(t) for t in server.kite.universe.tokens[:200]]}
                )
            )
            frames = await _collect(ws, 1.5)
            conn = _live_connection(server, APP.api_key)
            server.send_malformed(2, connection=conn)
            server.stall_connections(None, connection=conn)  # nothing more will be sent
            frames += await _collect(ws, 1.0)
            return conn, frames

    conn, frames = asyncio.run(run())
    listed = requests.get(server.endpoints["kite_control"] + "/connections", timeout=10).json()
    stats = next(c for c in listed["connections"] if c["id"] == conn)
    result = decode_frames(frames)
    assert stats["heartbeats_sent"] == result.heartbeats
    assert stats["malformed_frames_sent"] == len({r.frame_index for r in result.rejected}) == 2
    assert stats["frames_sent"] == result.frames - result.heartbeats - 2 - len(result.texts)
    assert stats["packets_sent"] == result.ticks.num_rows
    assert stats["lvc_packets_sent"] == 200


# --- determinism and rate ---------------------------------------------------------------------


def _capture_state(seed: int, seconds: float) -> dict[tuple[int, int], tuple]:
    with SimServer(day=DAY, seed=seed, rate=5000, speed=20) as srv:
        token = access_token(srv.endpoints, APP)

        async def run():
            async with _connect(ws_url(srv.endpoints, APP, token)) as ws:
                all_tokens = [int(t) for t in srv.kite.universe.tokens]
                await ws.send(json.dumps({"a": "subscribe", "v": all_tokens}))
                await ws.send(json.dumps({"a": "mode", "v": ["full", all_tokens]}))
                return await _collect(ws, seconds)

        ticks = decode_frames(asyncio.run(run())).ticks.to_pylist()
    return {
        (t["instrument_token"], int(t["exchange_timestamp"].timestamp())): (
            t["last_price"], t["volume_traded"], t["high"], t["low"], t["oi"])
        for t in ticks if t["mode"] == "full"
    }  # fmt: skip


def test_same_seed_gives_the_same_market_over_the_wire():
    a = _capture_state(7, 2.0)
    b = _capture_state(7, 2.0)
    c = _capture_state(8, 2.0)
    common = a.keys() & b.keys()
    assert len(common) > 200
    assert all(a[k] == b[k] for k in common)
    other = a.keys() & c.keys()
    assert other and sum(a[k] != c[k] for k in other) > 0.9 * len(other)


def test_delivers_tens_of_thousands_of_packets_per_second(capsys):
    with SimServer(day=DAY, rate=60_000, speed=10) as srv:
        token = access_token(srv.endpoints, APP)

        async def run():
            async with _connect(ws_url(srv.endpoints, APP, token)) as ws:
                all_tokens = [int(t) for t in srv.kite.universe.tokens]
                await ws.send(json.dumps({"a": "subscribe", "v": all_tokens}))
                await ws.send(json.dumps({"a": "mode", "v": ["full", all_tokens]}))
                await _collect(ws, 0.5)
                start = time.monotonic()
                frames = await _collect(ws, 3.0)
                return _packets(frames) / (time.monotonic() - start)

        rate = asyncio.run(run())
    with capsys.disabled():
        print(f"\nsimulator delivered {rate:,.0f} full-mode packets/s to one websockets client")
    assert rate >= 20_000
