"""Typed errors of the app store domain.

Every error carries `errors`: a mapping from a field path (``"parameters[2].default"``,
``"values.DB_PORT"``, ``"services.web.ports[0]"``) to a message meant for a person. The API layer
turns them into field-level problem responses (400/422), never into a 500.
"""

from __future__ import annotations


class AppStoreError(ValueError):
    """Base class: a bad document, template or value submitted by a user."""

    def __init__(self, errors: dict[str, str] | str, field: str = ""):
        if isinstance(errors, str):
            errors = {field: errors}
        self.errors: dict[str, str] = dict(errors)
        super().__init__(self.summary())

    def summary(self) -> str:
        return "; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items())


class ModelError(AppStoreError):
    """An app or version document (metadata, seed folder, imported template) is invalid."""


class YamlError(AppStoreError):
    """YAML text is malformed, or refused for its size, depth or alias expansion."""


class InterpolationError(AppStoreError):
    """A `${...}` expression is malformed, or a required variable (`${VAR:?msg}`) is missing."""


class ValuesError(AppStoreError):
    """Submitted parameter values do not satisfy the version's parameters."""


class ComposeError(AppStoreError):
    """The rendered compose document is not a valid compose file."""
