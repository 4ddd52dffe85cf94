"""Grounded image generation on diffusers building blocks.

Modules (each imports torch/diffusers only when used):

* :mod:`~gligen_eval.generation.sampler`: :class:`GroundedSampler`, the batched grounded sampler;
* :mod:`~gligen_eval.generation.grounding`: grounding tokenizers (one per modality) and the
  scaled gated layers;
* :mod:`~gligen_eval.generation.schedule`: the α (official) and β (diffusers) grounding schedules;
* :mod:`~gligen_eval.generation.loading`: components from ``tiny``, a diffusers folder or a hub id;
* :mod:`~gligen_eval.generation.tiny`: tiny random components built in code.
"""
