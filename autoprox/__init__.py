"""autoprox: discover zero-cost proxies for Vision Transformers, then search ViTs with them."""
__version__ = "0.2.0"
