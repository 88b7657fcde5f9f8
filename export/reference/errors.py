"""The one error the reference raises for what it does not implement."""


class UnsupportedError(NotImplementedError):
    """An operator, attribute or attribute value the reference does not implement: never
    approximated."""
