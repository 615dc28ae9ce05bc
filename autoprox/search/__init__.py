"""Training-free ViT search; ``autoprox.search(...)`` (this package, called) is ``autoprox.api.search``."""
from autoprox.api import make_callable

make_callable(__name__, "search")
