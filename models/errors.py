"""Input validation that fails fast with the field, the value and what would be valid.

Every check raises :class:`ConfigError` (a ``ValueError``) rather than using ``assert``,
which ``python -O`` would strip.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A field of a scenario, catalog entry or call has a value that cannot be used."""

    def __init__(self, field: str, value: Any, valid: str, suggestion: str | None = None):
        self.field = field
        self.value = value
        self.valid = valid
        self.suggestion = suggestion
        message = f"{field}: {value!r} is not valid; expected {valid}"
        if suggestion is not None:
            message += f" (did you mean {suggestion!r}?)"
        super().__init__(message)


def nearest(value: Any, choices: Iterable[str]) -> str | None:
    """The closest valid name to a misspelt one, or None when nothing is close."""
    matches = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def require_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    options = sorted(choices)
    if not isinstance(value, str) or value not in options:
        raise ConfigError(field, value, "one of " + ", ".join(options), nearest(value, options))
    return value


def require_number(
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """A finite real number within bounds (bools are refused: ``True`` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(field, value, _bounds("a finite number", minimum, maximum,
                                                exclusive_minimum))
    too_low = minimum is not None and (
        value <= minimum if exclusive_minimum else value < minimum
    )
    too_high = maximum is not None and value > maximum
    if too_low or too_high:
        raise ConfigError(field, value, _bounds("a number", minimum, maximum, exclusive_minimum))
    return float(value)


def require_positive(field: str, value: Any) -> float:
    return require_number(field, value, minimum=0.0, exclusive_minimum=True)


def require_int(field: str, value: Any, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, value, _bounds("an integer", minimum, maximum, False))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(field, value, _bounds("an integer", minimum, maximum, False))
    return value


def _bounds(kind: str, minimum: float | None, maximum: float | None, exclusive: bool) -> str:
    parts = [kind]
    if minimum is not None:
        parts.append(f"{'>' if exclusive else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return " ".join(parts[:1]) + (" " + " and ".join(parts[1:]) if len(parts) > 1 else "")
