"""Array aliases and helpers shared by the BKT modules (read-only arrays, typed sums)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def frozen_floats(values: ArrayLike) -> FloatArray:
    """A read-only float64 copy of ``values``, safe to share between results."""
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def frozen_ints(values: ArrayLike) -> IntArray:
    """A read-only int64 copy of ``values``, safe to share between results."""
    array = np.array(values, dtype=np.int64)
    array.setflags(write=False)
    return array


def frozen_flags(values: ArrayLike) -> BoolArray:
    """A read-only bool copy of ``values``, safe to share between results."""
    array = np.array(values, dtype=np.bool_)
    array.setflags(write=False)
    return array


def sum_by(index: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Sum of ``weights`` per value of ``index`` in [0, size) (a typed np.bincount)."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)
