"""Import-only stand-in for NVIDIA's `eff` (Encrypted File Format) library.

Installed by taomake into its TAO CPU venv (see docs/tao-cpu.md).  nvidia-tao-pytorch imports
`eff` unconditionally, but the real library is not installable on Python 3.12 (docs/tao-notes.md
§9).  Plain `.pth` checkpoints never touch it, so this package only has to import.  Every
entry point that would really encrypt, decrypt or open an EFF archive (`.tlt` files, an
`encryption_key`) raises `EffUnavailableError` with a clear message instead.

`EffUnavailableError` subclasses NotImplementedError: TAO's status decorator then writes a
"Feature not implemented: ..." FAILURE line to status.json and the action exits non-zero.
"""

__version__ = "0.0.0+taomake.stub"
IS_TAOMAKE_STUB = True

MESSAGE = (
    "NVIDIA's 'eff' library is not available in taomake's TAO CPU venv (this 'eff' is an "
    "import-only stand-in): encrypted models (.tlt files, an encryption_key / passphrase) "
    "are not supported here; use plain .pth checkpoints and leave encryption_key unset"
)


class EffUnavailableError(NotImplementedError):
    """Raised when code really tries to use EFF encryption or archives."""

    def __init__(self, what: str = ""):
        super().__init__(f"{MESSAGE} (attempted: {what})" if what else MESSAGE)


def unavailable(what: str):
    """A callable that raises EffUnavailableError naming `what` when called."""

    def _raise(*_args, **_kwargs):
        raise EffUnavailableError(what)

    _raise.__name__ = what.rsplit(".", 1)[-1]
    _raise.__qualname__ = _raise.__name__
    _raise.__doc__ = f"Stand-in for {what}: always raises EffUnavailableError."
    return _raise


class _UnavailableMeta(type):
    """Metaclass so that class-level use (Archive.create(...), Archive.States) raises too."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise EffUnavailableError(f"{cls.__module__}.{cls.__name__}.{name}")


class UnavailableClass(metaclass=_UnavailableMeta):
    """Base of the stand-in classes: instantiating or using them raises."""

    def __init__(self, *_args, **_kwargs):
        raise EffUnavailableError(f"{type(self).__module__}.{type(self).__name__}()")
