"""Proxy evolution; ``autoprox.evolve(config)`` (this package, called) is ``autoprox.api.evolve``."""
from autoprox.api import make_callable

make_callable(__name__, "evolve")
