"""Stand-in for eff.codec: stream encryption is not supported."""

from eff import unavailable

encrypt_stream = unavailable("eff.codec.encrypt_stream")
decrypt_stream = unavailable("eff.codec.decrypt_stream")
get_random_encryption = unavailable("eff.codec.get_random_encryption")
