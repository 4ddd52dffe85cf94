"""The results schema of a run directory, described once: what each JSON file and row holds.

The file names are :mod:`gligen_eval.store`'s constants; the rows of ``samples.jsonl`` and
``instances.jsonl`` are :class:`~gligen_eval.records.SampleRecord` and
:class:`~gligen_eval.records.InstanceRecord` (their ``to_dict``). The metric keys of ``metrics.json``
are declared by the scorers that write them (:class:`~gligen_eval.scoring.protocol.KeySpec`); what
is not a metric -- the counts, the breakdown keys, the manifest -- is declared here. Writers and
readers both use these names.
"""

from __future__ import annotations

from typing import Any, TypedDict

# ---- metrics.json: the scorers' keys, their ``/lo`` ``/hi`` intervals, and these counts -------------

N_SAMPLES = "n_samples"
N_LAYOUTS = "n_layouts"
N_INSTANCES = "n_instances"
N_INSTANCES_UNMAPPED = "n_instances_unmapped"
"""Objects left out because the closed-set detector has no class for them (only when > 0)."""
COUNT_KEYS = (N_SAMPLES, N_LAYOUTS, N_INSTANCES, N_INSTANCES_UNMAPPED)

# ---- breakdowns.json -------------------------------------------------------------------------

AP_PER_CATEGORY = "box/AP_per_category"
"""{category: AP} of the main detector."""
REAL_AP_PER_CATEGORY = "box/real/AP_per_category"
INSTANCES_PER_CATEGORY = "box/instances_per_category"
"""{category: {mIoU, success, n}} over the per-instance rows."""
AP_PER_KEYPOINT = "kp/AP_per_keypoint"
"""{keypoint name: {similarity, pck, n}}: how well the best-matching pose places each keypoint."""
FID_DETAILS = "fid"
"""The image counts and KID subset size behind ``fid`` and ``kid``."""


class DetectionRow(TypedDict):
    """One line of ``detections.jsonl``: one detector's detections on one image."""

    sample_key: str
    detector: str
    """The detector's fingerprint."""
    detections: list[dict[str, Any]]
    """:meth:`~gligen_eval.records.Detection.to_dict` of each detection."""


class ClipRow(TypedDict):
    """One line of ``clip.jsonl``."""

    sample_key: str
    layout_id: str
    seed: int
    image: str
    scorer: str
    caption: str
    phrases: list[str]


class ManifestLayouts(TypedDict):
    source: str
    count: int
    hash: str


class Manifest(TypedDict, total=False):
    """``manifest.json``: what produced the run, enough to reproduce it and to read it back."""

    schema_version: int
    name: str
    created: str
    config: dict[str, Any]
    """The whole :class:`~gligen_eval.config.RunConfig` (``to_dict``)."""
    config_hash: str
    generation_hash: str
    resolved: dict[str, Any]
    """What the config left open: ``modality``, the sampler's α, the generation settings."""
    versions: dict[str, str]
    git: dict[str, Any]
    argv: list[str]
    device: str
    world_size: int
    models: dict[str, dict[str, Any]]
    """``generator`` and every scoring model by role (``detector``, ``pose``, ``clip``, ``detector@<name>``,
    ``condition``, ``fid``, ``quality``, ``comp``, a user scorer's own roles): name, fingerprint, ..."""
    layouts: ManifestLayouts
    seed_policy: str
    random_weights: bool
