"""Credentials in URLs (`scheme://user:secret@host/...`): found, refused, and masked.

project.yaml never holds a secret: storage settings name an endpoint, a profile, a region, and
keys come from the standard AWS chain.  A URL with credentials in it is refused at validate
(compiler.model), and any URL taomake shows (errors, warnings, logs) has them masked, the
environment's endpoint included.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : the userinfo part of any URL in a text
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@'\"]+)@")
MASK = "***"

CREDENTIALS_HINT = ("remove the `user:password@` part and give the keys the standard AWS way "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                    "storage.profile): project.yaml holds no secret")


def has_credentials(url: str) -> bool:
    return bool(_USERINFO.match(url.strip()))


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it masked."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


# what project.yaml accepts as an S3 location (a valid bucket name, then any key prefix), and
# as a build cache's location (compiler.model.Cache, and TAOMAKE_CACHE_URL: taomake.cache)
S3_URL = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?"
CACHE_URL = rf"^({S3_URL}|file:///.+)$"

CREDENTIALS_ERROR = "url_credentials"  # the pydantic error type (compiler.load gives the fix)


def refuse_credentials(url):
    """A pydantic validator (before any other check of the value): a URL with credentials in
    it is an error, whose message never shows the value."""
    from pydantic_core import PydanticCustomError

    if isinstance(url, str) and has_credentials(url):
        raise PydanticCustomError(
            CREDENTIALS_ERROR, "a URL with credentials in it: they would be stored in the "
            "build plan and shown in logs and messages")
    return url


__all__ = ["CACHE_URL", "CREDENTIALS_ERROR", "CREDENTIALS_HINT", "MASK", "S3_URL",
           "has_credentials", "redact", "refuse_credentials"]
