"""Stand-in for eff.core (see the `eff` package docstring)."""

from eff.core.archive import Archive

__all__ = ["Archive"]
