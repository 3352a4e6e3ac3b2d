"""Simulator fixes the daily login relies on: stateless access tokens and a clock that stops
accelerating after the session close (so a morning token lasts the day, not three minutes)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tick_assets.calendars import IST
from tick_assets.sim import clock as clock_module
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.clock import SimClock
from tick_assets.sim.kite.auth import mint_access_token, read_access_token
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token

APP = SIM_APPS["indices"]
OTHER = SIM_APPS["nifty500"]
DAY = date(2026, 11, 20)


def _profile(endpoints: dict[str, str], token: str, app=APP) -> str:
    kite = KiteConnect(app.api_key, access_token=token, root=endpoints["kite_rest"])
    return kite.profile()["user_id"]


def test_a_token_from_one_sim_instance_works_on_another_and_in_another_process():
    with (
        SimServer(day=DAY, rate=0) as issuer,
        SimServer(day=date(2025, 3, 13), rate=0) as other_day,
    ):
        token = access_token(issuer.endpoints, APP)
        assert len(token) == 32 and token.isalnum()
        assert _profile(other_day.endpoints, token) == APP.user_id
        # a Dagster run is a new process with its own simulator
        code = (
            "import sys; from datetime import date; from kiteconnect import KiteConnect;"
            "from tick_assets.sim.server import SimServer;"
            "srv = SimServer(day=date(2026, 11, 19), rate=0).start();"
            "k = KiteConnect(sys.argv[1], access_token=sys.argv[2], root=srv.endpoints['kite_rest']);"
            "print(k.profile()['user_id']); srv.stop()"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, APP.api_key, token],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == APP.user_id
        # logging out on one instance logs out everywhere in the process
        KiteConnect(
            APP.api_key, access_token=token, root=issuer.endpoints["kite_rest"]
        ).invalidate_access_token()
        with pytest.raises(kex.TokenException):
            _profile(other_day.endpoints, token)


def test_forged_and_misused_tokens_are_refused():
    with SimServer(day=DAY, rate=0) as srv:
        token = access_token(srv.endpoints, APP)
        with pytest.raises(kex.TokenException):
            _profile(srv.endpoints, token, app=OTHER)  # another app's api_key
        flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
        with pytest.raises(kex.TokenException):
            _profile(srv.endpoints, flipped)
        # a token minted with the wrong secret (not the app's) fails the HMAC
        now = srv.kite.clock.now()
        assert read_access_token(APP, mint_access_token(OTHER, now, now + 3600)) is None
        assert read_access_token(APP, mint_access_token(APP, now, now + 3600)) == (
            float(int(now)),
            float(int(now + 3600)),
        )
        assert srv.expire_access_tokens() == 1  # "expire all" still expires what it issued
        with pytest.raises(kex.TokenException):
            _profile(srv.endpoints, token)


def test_a_fast_sim_token_stays_valid_for_hours_of_wall_time():
    with SimServer(day=DAY, rate=0, speed=400) as srv:
        token = access_token(srv.endpoints, APP)
        login, expires = read_access_token(APP, token)
        assert datetime.fromtimestamp(expires, IST) == datetime(2026, 11, 21, 6, 0, tzinfo=IST)
        # 09:15 -> 15:30 plays in ~56 s, then the clock runs at real time until 06:00
        assert srv.kite.clock.real_seconds_until(expires) > 14 * 3600
        assert _profile(srv.endpoints, token) == APP.user_id


class _FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_clock_accelerates_until_the_close_then_runs_at_real_time(monkeypatch):
    fake = _FakeMonotonic()
    monkeypatch.setattr(clock_module._time, "monotonic", fake)
    open_ = datetime(2026, 11, 20, 9, 15, tzinfo=IST)
    close = datetime(2026, 11, 20, 15, 30, tzinfo=IST)
    clock = SimClock(open_, speed=375, realtime_after=close)
    session = (close - open_).total_seconds()  # 22500 s = 60 wall s at 375x
    assert clock.real_seconds_until(close.timestamp()) == pytest.approx(60)
    fake.t += 30
    assert clock.now() == pytest.approx(open_.timestamp() + session / 2)
    assert clock.current_speed() == 375
    fake.t += 30
    assert clock.now() == pytest.approx(close.timestamp())
    fake.t += 100  # past the close: one simulated second per wall second
    assert clock.now() == pytest.approx(close.timestamp() + 100)
    assert clock.current_speed() == 1
    six_am = datetime(2026, 11, 21, 6, 0, tzinfo=IST).timestamp()
    assert clock.real_seconds_until(six_am) == pytest.approx(six_am - clock.now())
    # jumping back into the session accelerates again; jumping past the close does not
    clock.set(open_ + timedelta(hours=6))
    fake.t += 10
    assert clock.now() == pytest.approx(open_.timestamp() + 6 * 3600 + 900 + 10 - 900 / 375)
    clock.set(datetime(2026, 11, 21, 5, 59, 50, tzinfo=IST))
    fake.t += 10
    assert clock.now() == pytest.approx(six_am)
    # without realtime_after the clock keeps its speed
    plain = SimClock(open_, speed=10)
    fake.t += 10
    assert plain.now() == pytest.approx(open_.timestamp() + 100)
