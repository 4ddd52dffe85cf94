"""Writes the bundled sample layouts (COCO format) from the scenes described below.

    python -m gligen_eval.layouts.sample.make_sample      # rewrites the three JSON files here

The scenes are original: hand-placed boxes for 24 everyday images (there are no image files),
two captions each, and persons whose 17 keypoints come from a few pose templates drawn in box
coordinates, with a small seeded jitter. The output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The 80 COCO categories with their (non-contiguous) COCO ids, by supercategory.
_SUPER = [
    ("person", [(1, "person")]),
    ("vehicle", [(2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
                 (8, "truck"), (9, "boat")]),
    ("outdoor", [(10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"), (15, "bench")]),
    ("animal", [(16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"),
                (23, "bear"), (24, "zebra"), (25, "giraffe")]),
    ("accessory", [(27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase")]),
    ("sports", [(34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"),
                (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"), (43, "tennis racket")]),
    ("kitchen", [(44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl")]),
    ("food", [(52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"),
              (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake")]),
    ("furniture", [(62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet")]),
    ("electronic", [(72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone")]),
    ("appliance", [(78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator")]),
    ("indoor", [(84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"),
                (90, "toothbrush")]),
]  # fmt: skip
CATEGORIES = [{"id": i, "name": n, "supercategory": s} for s, items in _SUPER for i, n in items]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}

KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
            [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip

# Pose templates: (u, v, visibility) per keypoint in box coordinates (0..1 of the person box), in
# KEYPOINT_NAMES order. "Left" is the person's left: for a person facing the camera it is on the
# image's right. Visibility follows COCO: 2 visible, 1 labelled but occluded, 0 not labelled.
_ = (0.0, 0.0, 0)
POSES: dict[str, list[tuple[float, float, int]]] = {
    "standing": [(0.50, 0.07, 2), (0.54, 0.05, 2), (0.46, 0.05, 2), (0.60, 0.07, 2), (0.40, 0.07, 2),
                 (0.80, 0.20, 2), (0.20, 0.20, 2), (0.88, 0.36, 2), (0.12, 0.36, 2), (0.92, 0.50, 2),
                 (0.08, 0.50, 2), (0.68, 0.52, 2), (0.32, 0.52, 2), (0.66, 0.74, 2), (0.34, 0.74, 2),
                 (0.64, 0.95, 2), (0.36, 0.95, 2)],
    # profile facing the image's right: the right side faces the camera, the left side is hidden
    "walking": [(0.66, 0.07, 2), (0.62, 0.05, 1), (0.60, 0.05, 2), _, (0.48, 0.07, 2),
                (0.52, 0.20, 1), (0.48, 0.20, 2), (0.38, 0.36, 1), (0.60, 0.35, 2), (0.28, 0.49, 1),
                (0.70, 0.47, 2), (0.50, 0.52, 1), (0.47, 0.52, 2), (0.64, 0.72, 2), (0.38, 0.73, 2),
                (0.74, 0.94, 2), (0.22, 0.92, 2)],
    "sitting": [(0.50, 0.09, 2), (0.55, 0.07, 2), (0.45, 0.07, 2), (0.62, 0.09, 2), (0.38, 0.09, 2),
                (0.76, 0.27, 2), (0.24, 0.27, 2), (0.84, 0.47, 2), (0.16, 0.47, 2), (0.64, 0.60, 2),
                (0.36, 0.60, 2), (0.62, 0.62, 2), (0.38, 0.62, 2), (0.68, 0.72, 2), (0.32, 0.72, 2),
                (0.70, 0.96, 2), (0.30, 0.96, 2)],
    "arms_raised": [(0.50, 0.17, 2), (0.54, 0.15, 2), (0.46, 0.15, 2), (0.58, 0.17, 2), (0.42, 0.17, 2),
                    (0.68, 0.29, 2), (0.32, 0.29, 2), (0.84, 0.19, 2), (0.16, 0.19, 2), (0.90, 0.04, 2),
                    (0.10, 0.04, 2), (0.60, 0.57, 2), (0.40, 0.57, 2), (0.61, 0.77, 2), (0.39, 0.77, 2),
                    (0.62, 0.96, 2), (0.38, 0.96, 2)],
    # seated at a table, seen from behind: no face, legs hidden by the chair and the table
    "sitting_back": [_, _, _, (0.38, 0.10, 2), (0.62, 0.10, 2),
                     (0.18, 0.30, 2), (0.82, 0.30, 2), (0.10, 0.55, 2), (0.90, 0.55, 2), (0.25, 0.70, 1),
                     (0.75, 0.70, 1), (0.32, 0.92, 1), (0.68, 0.92, 1), _, _, _, _],
    # profile facing right, astride a horse: the far (left) leg is hidden by the horse
    "riding": [(0.72, 0.07, 2), (0.70, 0.05, 1), (0.68, 0.05, 2), _, (0.55, 0.07, 2),
               (0.52, 0.22, 1), (0.50, 0.22, 2), (0.62, 0.38, 1), (0.60, 0.38, 2), (0.78, 0.45, 1),
               (0.76, 0.46, 2), (0.42, 0.55, 1), (0.40, 0.55, 2), (0.62, 0.68, 1), (0.60, 0.68, 2),
               _, (0.52, 0.93, 2)],
    # skier in a tuck, profile facing left: the left side faces the camera
    "crouch": [(0.28, 0.10, 2), (0.31, 0.08, 2), (0.30, 0.08, 1), (0.42, 0.10, 2), _,
               (0.45, 0.28, 2), (0.48, 0.28, 1), (0.30, 0.42, 2), (0.33, 0.43, 1), (0.15, 0.50, 2),
               (0.18, 0.52, 1), (0.62, 0.55, 2), (0.64, 0.55, 1), (0.42, 0.72, 2), (0.45, 0.74, 1),
               (0.55, 0.95, 2), (0.58, 0.94, 1)],
    # tennis serve facing the camera: left arm up with the racket, right hand after the toss
    "serve": [(0.50, 0.20, 2), (0.53, 0.18, 2), (0.47, 0.18, 2), (0.58, 0.20, 2), (0.42, 0.20, 2),
              (0.65, 0.32, 2), (0.35, 0.32, 2), (0.74, 0.18, 2), (0.22, 0.42, 2), (0.80, 0.03, 2),
              (0.15, 0.30, 2), (0.58, 0.60, 2), (0.42, 0.60, 2), (0.60, 0.78, 2), (0.38, 0.78, 2),
              (0.62, 0.97, 2), (0.35, 0.97, 2)],
    # skateboarder balancing: knees bent, arms out
    "skate": [(0.50, 0.10, 2), (0.53, 0.08, 2), (0.47, 0.08, 2), (0.58, 0.10, 2), (0.42, 0.10, 2),
              (0.62, 0.25, 2), (0.38, 0.25, 2), (0.80, 0.32, 2), (0.20, 0.32, 2), (0.96, 0.35, 2),
              (0.04, 0.35, 2), (0.58, 0.55, 2), (0.42, 0.55, 2), (0.66, 0.72, 2), (0.34, 0.72, 2),
              (0.62, 0.95, 2), (0.38, 0.95, 2)],
    # too small to label any keypoint (as for distant people in COCO)
    "unlabelled": [_] * 17,
}  # fmt: skip

# (width, height, [captions], [(category, x, y, w, h[, pose])]) ; boxes are COCO [x, y, w, h] pixels
SCENES = [
    (640, 480, ["A woman walking a dog across a city street.", "A person crosses the road with a small dog on a leash."],
     [("person", 250, 150, 95, 215, "walking"), ("dog", 340, 300, 90, 65), ("car", 20, 250, 200, 110),
      ("traffic light", 560, 40, 30, 80)]),
    (640, 480, ["A kitchen counter with a microwave, a bowl of oranges and a bottle.",
                "Oranges in a bowl on a counter next to a refrigerator."],
     [("microwave", 380, 110, 170, 110), ("bowl", 120, 260, 140, 60), ("orange", 140, 235, 40, 38),
      ("orange", 185, 238, 38, 36), ("bottle", 300, 180, 40, 125), ("refrigerator", 5, 30, 115, 450)]),
    (640, 427, ["A cat sleeping on a couch next to a potted plant.", "A grey cat naps on the sofa in a bright living room."],
     [("couch", 90, 180, 420, 200), ("cat", 230, 220, 120, 60), ("potted plant", 520, 150, 95, 230),
      ("remote", 360, 285, 50, 20)]),
    (640, 480, ["A man carrying a surfboard on the beach.", "A surfer walks along the sand holding his board."],
     [("person", 300, 120, 110, 300, "standing"), ("surfboard", 390, 100, 60, 290), ("umbrella", 40, 160, 180, 120),
      ("bird", 500, 60, 40, 25)]),
    (640, 480, ["A pizza and two wine glasses on a dining table.", "Dinner for two: a large pizza with glasses of red wine."],
     [("dining table", 0, 200, 640, 280), ("pizza", 180, 270, 250, 120), ("wine glass", 470, 190, 45, 100),
      ("wine glass", 520, 195, 45, 100), ("knife", 120, 330, 30, 110), ("fork", 85, 330, 25, 110)]),
    (640, 427, ["An elderly man sitting on a park bench reading a book.", "A man reads on a bench beside a parked bicycle."],
     [("bench", 140, 210, 380, 160), ("person", 270, 110, 130, 235, "sitting"), ("book", 300, 230, 50, 35),
      ("bicycle", 490, 220, 150, 120)]),
    (640, 480, ["Two giraffes standing near a tree in a grassy field.", "A pair of giraffes on the savanna."],
     [("giraffe", 80, 40, 160, 400), ("giraffe", 330, 90, 140, 330), ("bird", 500, 30, 30, 20)]),
    (640, 480, ["A laptop, a mouse and a cup of coffee on a desk.", "An open laptop on a wooden desk with a phone and a mug."],
     [("laptop", 180, 140, 260, 180), ("mouse", 470, 280, 45, 28), ("cup", 70, 230, 70, 80),
      ("cell phone", 440, 330, 55, 30), ("book", 500, 180, 120, 60)]),
    (480, 640, ["A tennis player serving on a hard court.", "A woman tosses the ball and raises her racket to serve."],
     [("person", 150, 170, 190, 380, "serve"), ("tennis racket", 290, 60, 80, 120), ("sports ball", 380, 30, 22, 22)]),
    (640, 427, ["A red bus and a truck driving down a busy street.", "Traffic on a city road with a double decker bus."],
     [("bus", 60, 90, 300, 230), ("truck", 400, 150, 200, 160), ("car", 10, 220, 100, 70),
      ("traffic light", 600, 20, 25, 70), ("person", 370, 230, 35, 90, "standing")]),
    (640, 480, ["A plate of donuts next to a cup of coffee and a spoon.", "Three glazed donuts and a coffee on a table."],
     [("dining table", 0, 100, 640, 380), ("donut", 150, 200, 110, 90), ("donut", 270, 210, 105, 85),
      ("donut", 210, 130, 100, 85), ("cup", 430, 170, 110, 110), ("spoon", 560, 200, 40, 130)]),
    (640, 480, ["A person riding a brown horse through a field.", "A rider on horseback crossing a meadow."],
     [("horse", 170, 170, 320, 280), ("person", 240, 60, 140, 220, "riding"), ("horse", 520, 230, 100, 80)]),
    (480, 640, ["A white toilet next to a sink in a small bathroom.", "A clean bathroom with a toilet and a washbasin."],
     [("toilet", 150, 340, 170, 280), ("sink", 300, 240, 170, 110), ("toothbrush", 390, 200, 12, 50),
      ("bottle", 430, 190, 30, 70)]),
    (640, 480, ["A skier going down a snowy slope.", "A skier in a tuck racing downhill while someone watches."],
     [("person", 260, 140, 140, 220, "crouch"), ("skis", 220, 340, 230, 30), ("person", 60, 120, 30, 70, "unlabelled")]),
    (640, 480, ["Two kids playing frisbee in the park with their dog.", "Children throw a frisbee on the grass."],
     [("person", 100, 110, 120, 320, "arms_raised"), ("person", 400, 140, 100, 260, "walking"),
      ("frisbee", 240, 90, 45, 20), ("dog", 260, 330, 110, 80)]),
    (640, 427, ["An elephant walking beside a small lake.", "A large elephant near the water with a boat behind it."],
     [("elephant", 150, 110, 330, 260), ("bird", 520, 60, 40, 25), ("boat", 500, 300, 120, 50)]),
    (640, 480, ["A bowl of bananas and apples on a wooden table.", "Fresh fruit in a bowl with a knife beside it."],
     [("bowl", 180, 220, 280, 120), ("banana", 200, 180, 160, 80), ("apple", 360, 200, 70, 70),
      ("apple", 420, 215, 65, 65), ("dining table", 0, 260, 640, 220), ("knife", 520, 380, 100, 25)]),
    (640, 480, ["A teddy bear sitting on a neatly made bed.", "A bedroom with a stuffed bear on the bed and a clock."],
     [("bed", 60, 180, 520, 300), ("teddy bear", 260, 200, 110, 130), ("clock", 540, 60, 60, 60),
      ("book", 80, 320, 80, 40)]),
    (640, 427, ["A passenger airplane parked at the airport gate.", "A jet waits on the tarmac next to a service truck."],
     [("airplane", 40, 80, 560, 220), ("truck", 450, 280, 150, 100), ("person", 380, 300, 30, 80, "standing"),
      ("suitcase", 340, 340, 35, 45)]),
    (640, 480, ["A family of four sitting around a table eating dinner.", "Four people share a meal at the kitchen table."],
     [("person", 30, 120, 150, 250, "sitting"), ("person", 470, 110, 150, 260, "sitting"),
      ("person", 180, 230, 150, 250, "sitting_back"), ("person", 290, 70, 115, 200, "sitting"),
      ("dining table", 100, 260, 440, 180), ("bowl", 260, 290, 70, 35), ("cup", 380, 280, 35, 45),
      ("chair", 20, 230, 130, 220)]),
    (640, 480, ["Cows grazing in a green pasture.", "Three cows eating grass in a field."],
     [("cow", 60, 200, 200, 140), ("cow", 300, 220, 170, 120), ("cow", 500, 240, 120, 90)]),
    (640, 480, ["A man standing next to his motorcycle on a quiet road.", "A motorcyclist poses beside his bike."],
     [("motorcycle", 160, 200, 320, 200), ("person", 470, 110, 110, 320, "standing"), ("car", 20, 180, 120, 70)]),
    (480, 640, ["A young man doing a trick on a skateboard.", "A skateboarder balances with his arms out."],
     [("person", 110, 140, 250, 330, "skate"), ("skateboard", 150, 470, 170, 50)]),
    (640, 427, ["Three zebras standing together on the savanna.", "A small herd of zebras in the grass."],
     [("zebra", 40, 130, 200, 190), ("zebra", 230, 140, 190, 180), ("zebra", 420, 150, 180, 170)]),
]  # fmt: skip

INFO = {
    "description": "gligen-eval sample layouts: original hand-written scenes in COCO format (no images)",
    "version": "1.0",
    "year": 2025,
    "contributor": "gligen-eval",
}
LICENSES = [{"id": 1, "name": "MIT License (the gligen-eval project license)", "url": ""}]


def _keypoints(pose: str, box: tuple[float, float, float, float], rng: random.Random) -> list[int]:
    x, y, w, h = box
    flat: list[int] = []
    for u, v, vis in POSES[pose]:
        if vis == 0:
            flat += [0, 0, 0]
            continue
        u = min(0.99, max(0.01, u + rng.uniform(-0.015, 0.015)))
        v = min(0.99, max(0.01, v + rng.uniform(-0.01, 0.01)))
        flat += [round(x + u * w), round(y + v * h), vis]
    return flat


def build() -> tuple[dict, dict, dict]:
    images, anns, kp_anns, caps = [], [], [], []
    ann_id, cap_id = 1, 1
    for image_id, (width, height, captions, objects) in enumerate(SCENES, start=1):
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"sample_{image_id:06d}.jpg",
                       "license": 1})  # fmt: skip
        for text in captions:
            caps.append({"id": cap_id, "image_id": image_id, "caption": text})
            cap_id += 1
        for obj in objects:
            name, x, y, w, h = obj[:5]
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (image_id, obj)
            box = [float(x), float(y), float(w), float(h)]
            ann = {"id": ann_id, "image_id": image_id, "category_id": CAT_ID[name], "bbox": box, "area": float(w * h),
                   "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}  # fmt: skip
            anns.append(ann)
            if name == "person":
                kps = _keypoints(obj[5], (x, y, w, h), random.Random(ann_id))
                kp_anns.append({**ann, "keypoints": kps, "num_keypoints": sum(1 for v in kps[2::3] if v > 0)})
            ann_id += 1
    person_cat = {**CATEGORIES[0], "keypoints": KEYPOINT_NAMES, "skeleton": SKELETON}
    common = {"info": INFO, "licenses": LICENSES, "images": images}
    instances = {**common, "annotations": anns, "categories": CATEGORIES}
    keypoints = {**common, "annotations": kp_anns, "categories": [person_cat]}
    captions = {**common, "annotations": caps}
    return instances, captions, keypoints


def main() -> None:
    instances, captions, keypoints = build()
    for name, data in (("instances_sample.json", instances), ("captions_sample.json", captions),
                       ("person_keypoints_sample.json", keypoints)):  # fmt: skip
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
