"""The ADE20K 150-class label set of the sem modality (label = index + 1; 0 is "other")."""

from __future__ import annotations

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel",
    "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball",
    "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
"""ADE20K SceneParsing class names in label order: ``ADE20K_CLASSES[label - 1]``."""

COCO_TO_ADE20K: dict[str, str] = {
    "person": "person", "bicycle": "bicycle", "car": "car", "motorcycle": "minibike", "airplane": "airplane",
    "bus": "bus", "truck": "truck", "boat": "boat", "traffic light": "traffic light", "bench": "bench",
    "bird": "animal", "cat": "animal", "dog": "animal", "horse": "animal", "sheep": "animal", "cow": "animal",
    "elephant": "animal", "bear": "animal", "zebra": "animal", "giraffe": "animal", "backpack": "bag",
    "handbag": "bag", "suitcase": "bag", "sports ball": "ball", "bottle": "bottle", "wine glass": "glass",
    "cup": "glass", "bowl": "pot", "chair": "chair", "couch": "sofa", "potted plant": "plant", "bed": "bed",
    "dining table": "table", "toilet": "toilet", "tv": "television receiver", "laptop": "computer",
    "microwave": "microwave", "oven": "oven", "sink": "sink", "refrigerator": "refrigerator", "book": "book",
    "clock": "clock", "vase": "vase", "teddy bear": "plaything", "kite": "flag", "banana": "food",
    "apple": "food", "sandwich": "food", "orange": "food", "broccoli": "food", "carrot": "food",
    "hot dog": "food", "pizza": "food", "donut": "food", "cake": "food",
}  # fmt: skip
"""A COCO category → the ADE20K class that stands for it in drawn sem maps (others are 0, "other")."""


def ade20k_label(name: str) -> int:
    """The label (1..150) of an ADE20K class name; 0 when it is not one."""
    try:
        return ADE20K_CLASSES.index(name) + 1
    except ValueError:
        return 0
