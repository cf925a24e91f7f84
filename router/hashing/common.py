"""What every scheme shares: the scheme names and 32-bit arithmetic."""

from __future__ import annotations

from typing import Final, Literal

HashScheme = Literal["turnout", "growthbook", "unleash", "eppo"]
DEFAULT_HASH_SCHEME: Final[HashScheme] = "turnout"

U32: Final = 0xFFFFFFFF
