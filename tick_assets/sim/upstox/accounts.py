"""Simulator Upstox users: fixed, public TEST access tokens that only the simulator accepts.

Upstox limits are per user, so each token here has its own windows; tests and benchmarks use
separate users to keep their traffic apart. None of these is a secret.
"""

from __future__ import annotations

SIM_UPSTOX_TOKENS: dict[str, str] = {
    "SIMUP1": "sim-upstox-access-token-user-0001",
    "SIMUP2": "sim-upstox-access-token-user-0002",
    "SIMUP3": "sim-upstox-access-token-user-0003",
    "SIMUP4": "sim-upstox-access-token-user-0004",
}
#: The token sim mode uses by default.
DEFAULT_USER = "SIMUP1"


def user_of(token: str) -> str | None:
    return next((u for u, t in SIM_UPSTOX_TOKENS.items() if t == token), None)
