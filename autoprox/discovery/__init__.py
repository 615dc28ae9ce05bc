"""Proxy discovery: the objective, genome variation, the DEAP loop, cross-validation, transfer and reports
(``autoprox.evolve(config)`` is ``autoprox.api.evolve``)."""
