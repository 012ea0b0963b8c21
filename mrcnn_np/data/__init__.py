"""Datasets: procedurally drawn shapes (:mod:`.shapes`); COCO-format datasets come later."""
