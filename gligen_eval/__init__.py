"""gligen-eval: measure how faithfully grounded text-to-image models follow their grounding.

Importing the package is cheap: torch, diffusers, transformers and ultralytics are only
imported by the modules that need them.
"""

__version__ = "0.1.0"

from gligen_eval.errors import GligenEvalError, InputError, MissingWeightsError

__all__ = ["GligenEvalError", "InputError", "MissingWeightsError", "__version__"]
