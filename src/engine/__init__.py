"""The training and inference engine, with one Accelerator owning devices, precision, trackers and state:
K-fold training (train.py) with AdamW or SAM (sam.py), the hyperparameter search on Ray Tune (tuning.py),
fold-ensemble inference with flip TTA and submissions (inference.py), ensembles across runs by mean, rank,
vote or fitted weights (ensemble.py), self-describing safetensors checkpoints (checkpoint.py), the resume
state of a killed run (resume.py), experiment trackers (tracking.py), the pictures of a run (pictures.py:
curves, ROC, confusion, Grad-CAM), and the filterbank scan's candidates scored by a trained model
(scan_model.py).

May import: core, data, synth, search, transforms, models.
"""
