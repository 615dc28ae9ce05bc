"""autoprox: discover zero-cost proxies for Vision Transformers, then search ViTs with them.

The Python API (``autoprox.api``) is importable from here; it loads lazily, so ``import
autoprox`` runs nothing heavy (no torch) until a function is used."""
__version__ = "0.2.0"
__all__ = ["list_proxies", "get_proxy", "score", "score_population", "bench", "evolve", "search", "default_batch"]


def __getattr__(name: str):
    if name in __all__:
        from autoprox import api
        return getattr(api, name)
    raise AttributeError(f"module 'autoprox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
