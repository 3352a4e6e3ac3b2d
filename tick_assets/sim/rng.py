"""Counter-based random numbers: a value is a pure function of (seed, key..., index).

A simulated market must be random-access: the price of one instrument at one second, or a
month of its candles, must come out the same whether computed alone or as part of the whole
universe, and whatever the order of requests. A stateful generator cannot do that cheaply;
hashing the coordinates with splitmix64 (vectorised over numpy uint64, wrapping arithmetic)
can.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 1.0 / float(1 << 53)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of x + golden ratio (uint64 in, uint64 out, vectorised)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def key(*parts: int | np.ndarray) -> np.ndarray:
    """Fold integer coordinates (scalars or broadcastable arrays) into one uint64 key."""
    out = np.zeros((), dtype=np.uint64)
    for part in parts:
        arr = np.asarray(part)
        if arr.dtype.kind == "i":
            arr = arr.astype(np.int64).view(np.uint64) if arr.ndim else np.uint64(int(arr) % 2**64)
        out = splitmix64(out ^ np.asarray(arr, dtype=np.uint64))
    return out


def uniform(k: np.ndarray) -> np.ndarray:
    """Uniform floats in the open interval (0, 1), one per key."""
    bits = splitmix64(k) >> _S11
    return (bits.astype(np.float64) + 0.5) * _UNIT


def normal(k: np.ndarray) -> np.ndarray:
    """Standard normal floats (Box-Muller on two uniforms derived from each key)."""
    u1 = uniform(k)
    u2 = uniform(k ^ np.uint64(0x5851F42D4C957F2D))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def unit_steps(k: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance steps from one uniform each (cheaper than normals)."""
    return (uniform(k) - 0.5) * np.sqrt(12.0)


_BYTE_SHIFTS = np.arange(0, 64, 8, dtype=np.uint64)


def byte_uniforms(k: np.ndarray) -> np.ndarray:
    """Eight coarse uniforms in (0, 1) per key (one per byte of its hash): shape k.shape + (8,).

    For the per-second paths, where 256 levels are plenty and hashing dominates the cost.
    """
    h = splitmix64(k)[..., None]
    return (((h >> _BYTE_SHIFTS) & np.uint64(0xFF)).astype(np.float64) + 0.5) / 256.0
