"""Stand-in for eff.core.archive: EFF archives (.tlt files) are not supported."""

from eff import UnavailableClass


class Archive(UnavailableClass):
    """EFF archive stand-in: any use raises EffUnavailableError."""
