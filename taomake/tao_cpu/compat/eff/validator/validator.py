"""Stand-in for eff.validator.validator: archive metadata validation is not supported."""

from eff import unavailable

validate_metadata = unavailable("eff.validator.validator.validate_metadata")
