"""Search spaces: ``get_space(name)`` -> a ``SearchSpace``; ``name`` is a registered space or a YAML
file declaring one over the existing builders (``autoprox.spaces.declared``)."""
from autoprox.spaces import base
from autoprox.spaces.base import ArchError, SearchSpace, list_spaces, register_space
from autoprox.spaces.declared import is_space_file, load_space
from . import autoformer, pit, supernet  # noqa: F401  (registers the built-in spaces)

__all__ = ["ArchError", "SearchSpace", "get_space", "list_spaces", "register_space"]


def get_space(name: str) -> SearchSpace:
    """The registered space ``name``, or the one a ``.yaml`` file declares."""
    return load_space(name) if is_space_file(str(name)) else base.get_space(name)
