"""Data in the Kaggle layout: its id tables and one cadence file's reader and checks, folds and pseudo-labels
(kaggle.py); the datasets and loaders that deliver raw float16 observations in whole batches, from the file tree
or the packed cache (datasets.py); the packed cache itself (packed.py); and the check of a whole data folder
(validation.py). Nothing here turns observations into images: that is src/transforms.

May import: core.
"""
