"""Checks a metric's protocol options (`vaelab eval --option METRIC.KEY=VALUE`, or
`evaluate_run(options=...)`) for type, finiteness and range before any work is done.

A metric's options are its keyword-only parameters; their annotations give the type (checked
as config values are, by `vaelab.config.check_value`), and the ranges below the values that
make sense (a sample size of 0, a negative bin count or a quantile of 2 is refused with a
message naming the option and what it takes).
"""

from __future__ import annotations

import math
import typing
from typing import Any

__all__ = ["check_metric_option"]

# option name -> (lowest, highest, what it is); None: no bound on that side. Whole-number
# sizes (samples, bins, batches, trees) take >= 1 unless listed here.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "threshold": (0.0, None, "a variance threshold >= 0"),
    "prune_threshold": (0.0, 1.0, "a fraction of the largest variance, in [0, 1]"),
    "diff_quantile": (0.0, 1.0, "a quantile in [0, 1]"),
}
# Whole-number options that are not sizes.
NOT_SIZES = {"n_jobs"}


def check_metric_option(metric: str, func: Any, key: str, value: Any) -> Any:
    """`value` checked (and converted losslessly) for option `key` of metric function `func`.

    Raises:
        ValueError: the wrong type, not finite, or out of range; the message names
            `metric.key`, what was given and what it takes.
    """
    from vaelab.config import ConfigError, check_value

    hints = typing.get_type_hints(func)
    name = f"{metric}.{key}"
    if key in hints:
        try:
            value = check_value(value, hints[key], name)
        except ConfigError as error:
            raise ValueError(str(error)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if key in RANGES:
        low, high, what = RANGES[key]
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{name}: expected {what}, got {value}")
    elif isinstance(value, int) and key in NOT_SIZES:
        if value == 0 or value < -1:
            raise ValueError(f"{name}: expected a number of jobs >= 1, or -1 for every core; "
                             f"got {value}")
    elif isinstance(value, int) and value < 1:
        raise ValueError(f"{name}: expected a whole number >= 1, got {value}")
    return value
