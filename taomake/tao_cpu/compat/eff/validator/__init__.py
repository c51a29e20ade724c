"""Stand-in for eff.validator (see the `eff` package docstring)."""
