"""Stand-in for eff.core.codec: stream encryption is not supported."""

from eff import unavailable

encrypt_stream = unavailable("eff.core.codec.encrypt_stream")
decrypt_stream = unavailable("eff.core.codec.decrypt_stream")
