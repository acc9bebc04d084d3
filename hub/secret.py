"""`Secret`: a string that hides itself in reprs (config values, driver settings)."""

from __future__ import annotations


class Secret(str):
    """A string that hides itself in repr() and str() formatting of containers."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)
