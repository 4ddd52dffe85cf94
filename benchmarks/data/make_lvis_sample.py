"""Writes lvis_sample.json: a small LVIS-v1-format layout file made up for the offline LVIS suite.

8 images of 512x512 with 2-5 objects each over 12 categories spread across the rare (r), common (c)
and frequent (f) groups, with synonyms, neg_category_ids and not_exhaustive_category_ids like the
real files. Deterministic: ``python benchmarks/data/make_lvis_sample.py`` rewrites the same bytes.
"""

import json
import random
from pathlib import Path

CATEGORIES = [  # id, name, synonyms, frequency
    (1, "aerosol_can", ["aerosol_can", "spray_can"], "c"),
    (2, "banana", ["banana"], "f"),
    (3, "bat_(animal)", ["bat_(animal)"], "c"),
    (4, "bicycle", ["bicycle", "bike_(bicycle)"], "f"),
    (5, "cowboy_hat", ["cowboy_hat", "ten-gallon_hat"], "c"),
    (6, "dog", ["dog"], "f"),
    (7, "gargoyle", ["gargoyle"], "r"),
    (8, "hourglass", ["hourglass"], "r"),
    (9, "lamp", ["lamp"], "f"),
    (10, "mug", ["mug"], "f"),
    (11, "walrus", ["walrus"], "r"),
    (12, "wok", ["wok"], "c"),
]


def build() -> dict:
    rng = random.Random(7)
    images, anns = [], []
    for i in range(1, 9):
        images.append({"id": i, "width": 512, "height": 512, "coco_url": f"http://images.example/val2017/{i:012d}.jpg",
                       "neg_category_ids": [], "not_exhaustive_category_ids": []})
        cats = rng.sample([c[0] for c in CATEGORIES], rng.randint(2, 5))
        for cid in cats:
            w, h = rng.randint(80, 260), rng.randint(80, 260)
            x, y = rng.randint(0, 512 - w), rng.randint(0, 512 - h)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cid, "bbox": [x, y, w, h],
                         "area": w * h, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        others = [c[0] for c in CATEGORIES if c[0] not in cats]
        images[-1]["neg_category_ids"] = sorted(rng.sample(others, 2))
        if i % 3 == 0:
            images[-1]["not_exhaustive_category_ids"] = [cats[0]]
    cats = [{"id": c, "name": n, "synonyms": s, "frequency": f, "image_count": 1, "instance_count": 1,
             "def": f"made-up category {n}"} for c, n, s, f in CATEGORIES]
    return {"info": {"description": "gligen-eval LVIS-format sample (made up, MIT)"}, "images": images,
            "annotations": anns, "categories": cats, "licenses": []}


if __name__ == "__main__":
    out = Path(__file__).with_name("lvis_sample.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
