"""The one error of the retention domain: a policy or immutable-tag document that does not validate."""

from __future__ import annotations


class RetentionError(ValueError):
    """A retention policy or immutable-tag document is invalid.

    `errors` maps a field path (``"rules[2].tags.regex"``, ``"overrides[0].repositories"``) to a
    message meant for a person, every problem of the document at once, as appstore's ModelError
    does; the admin API will turn it into a field-level 422, never a 500.
    """

    def __init__(self, errors: dict[str, str] | str, field: str = ""):
        if isinstance(errors, str):
            errors = {field: errors}
        self.errors: dict[str, str] = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items()))
