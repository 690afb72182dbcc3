"""From observations to what the model sees, on whole batches on the accelerator: the batch transform
(background cleaning, normalisation, arrangement by view, resize, de-Doppler planes; images.py), and
augmentation and test-time views (flips, mixup, CutMix, TTA; augment.py).

May import: core, search.
"""
