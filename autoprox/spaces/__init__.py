"""Search spaces: ``get_space(name)`` -> a ``SearchSpace``."""
from autoprox.spaces.base import ArchError, SearchSpace, get_space, list_spaces, register_space
from . import autoformer, pit, supernet  # noqa: F401  (registers the built-in spaces)

__all__ = ["ArchError", "SearchSpace", "get_space", "list_spaces", "register_space"]
