"""Scoring of generated images.

* :mod:`gligen_eval.scoring.detectors` -- the :class:`~gligen_eval.scoring.detectors.Detector` protocol,
  ultralytics YOLO / YOLO-pose, and the lazy detector registry (``build_detector``);
* :mod:`gligen_eval.scoring.coco` -- COCO/LVIS AP (boxes, keypoints) through pycocotools or
  faster-coco-eval, layouts -> COCO ground truth, detections -> COCO results, OKS;
* :mod:`gligen_eval.scoring.instances` -- per-object IoU matching with readable reasons, mIoU and
  success rate.

Importing this package imports none of the detection or evaluation libraries.
"""
