"""The built-in scorers, one module each (see :mod:`gligen_eval.scoring.protocol`).

Every :class:`~gligen_eval.scoring.protocol.Scorer` subclass with a ``name`` defined in a module
of this package is found by listing the package, so a new metric is its module and its tests.
"""
