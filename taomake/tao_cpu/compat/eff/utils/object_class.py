"""Stand-in for eff.utils.object_class."""

from eff import unavailable

generate_obj_cls = unavailable("eff.utils.object_class.generate_obj_cls")
