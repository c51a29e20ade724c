"""Stand-in for eff.callbacks: archive content callbacks are not supported."""

from eff import UnavailableClass


class BinaryContentCallback(UnavailableClass):
    """Stand-in: instantiating raises EffUnavailableError."""


class StringContentCallback(UnavailableClass):
    """Stand-in: instantiating raises EffUnavailableError."""
