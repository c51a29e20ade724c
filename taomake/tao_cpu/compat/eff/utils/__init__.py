"""Stand-in for eff.utils (see the `eff` package docstring)."""
