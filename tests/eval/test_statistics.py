"""Statistics over devices: normal and Student-t intervals of the mean."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.eval.statistics import describe


def test_describe_normal_and_student_t_intervals() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    sem = np.std(values, ddof=1) / 2
    assert describe(values)["ci95"] == pytest.approx(1.96 * sem)
    assert describe(values, "t")["ci95"] == pytest.approx(3.182446 * sem, rel=1e-6)  # t(0.975, 3), from tables
    assert describe([5.0], "t") == {"mean": 5.0, "std": 0.0, "ci95": None, "min": 5.0, "max": 5.0, "n": 1}
    with pytest.raises(ValueError, match="interval='z' is not allowed; valid: normal, t"):
        describe(values, "z")
    with pytest.raises(ValueError, match="non-empty"):
        describe([], "t")
