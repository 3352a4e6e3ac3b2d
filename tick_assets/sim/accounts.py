"""Simulator Kite apps: fixed, public TEST credentials that only the simulator accepts.

The recorders split the universe over two Kite apps (a websocket key allows 3 connections of
3000 instruments): one app for the indices and NIFTY 50 names, one for the rest of the
NIFTY 500. In sim mode the platform uses these; none of them is a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimApp:
    name: str
    api_key: str
    api_secret: str
    user_id: str
    password: str
    totp_seed: str  # base32, as Kite shows it when TOTP is enabled

    def __repr__(self) -> str:  # keep even test secrets out of logs by habit
        return f"SimApp(name={self.name!r}, api_key={self.api_key!r}, user_id={self.user_id!r})"


SIM_APPS: dict[str, SimApp] = {
    "indices": SimApp(
        name="indices",
        api_key="simidx7k2m9q4w1a",
        api_secret="simsecretindices0000000000000001",
        user_id="SIM001",
        password="sim-password-indices",
        totp_seed="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    ),
    "nifty500": SimApp(
        name="nifty500",
        api_key="simn500x8r3t6y2b",
        api_secret="simsecretnifty500000000000000002",
        user_id="SIM002",
        password="sim-password-nifty500",
        totp_seed="KRUGS4ZANFZSAYJAORSXG5BAONSWKZBA",
    ),
}


def app_by_key(api_key: str) -> SimApp | None:
    return next((a for a in SIM_APPS.values() if a.api_key == api_key), None)


def app_by_user(user_id: str) -> list[SimApp]:
    return [a for a in SIM_APPS.values() if a.user_id == user_id]
