"""Training-free ViT search: config, candidate proposal, the checkpointed run, reports
(``autoprox.search(...)`` is ``autoprox.api.search``)."""
