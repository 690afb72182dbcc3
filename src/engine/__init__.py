"""The training and inference engine, with one Accelerator owning devices, precision, trackers and state:
K-fold training (train.py), fold-ensemble inference with flip TTA and submissions (inference.py),
self-describing safetensors checkpoints (checkpoint.py), the resume state of a killed run (resume.py), and
experiment trackers (tracking.py).

May import: core, data, synth, transforms, models.
"""
