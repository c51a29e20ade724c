"""Stand-in for eff.validator.conditions.

TAO builds `Expression(operator.eq, 1)` objects as dataclass defaults at import time, so
construction must work; only evaluating one (which happens when an EFF archive is validated)
raises.
"""

from eff import EffUnavailableError


class Expression:
    """Holds an operator and a value; evaluating it raises EffUnavailableError."""

    def __init__(self, operator, value):
        self.operator = operator
        self.value = value

    def __call__(self, *_args, **_kwargs):
        raise EffUnavailableError("eff.validator.conditions.Expression()")

    def __repr__(self):
        name = getattr(self.operator, "__name__", repr(self.operator))
        return f"Expression({name}, {self.value!r})"
