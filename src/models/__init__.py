"""Models: timm backbones as cadence classifiers that return a dict with one logit per cadence, with GeM
pooling, stem stride and pretrained weights read only from a local file or folder (classifier.py), and for
scan snippets the exact sums of the tracks through their centre beside the backbone's features (track_evidence.py).

May import: core, transforms.
"""
