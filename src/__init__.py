"""The pipeline, in rooms by stage. Each room is a subpackage whose docstring says what it owns and which
rooms it may import; imports only run downward, from the entry points to the ground floor
(tests/test_layout.py checks both, and that no module imports another in a cycle).

    core        ground floor: the cadence's shape and resolution, the run config, errors, crash-safe writes, the
                entry points' error handling
    data        reading the Kaggle layout, datasets and loaders, the packed cache, the data-folder check
    synth       synthetic cadences made with setigen, and the same signals injected into training batches
    search      the classical searches: brute-force de-Doppler, the turbo_seti reference, the filterbank scan
    transforms  observations to model images (the batch transform), augmentation and test-time views
    models      timm backbones as cadence classifiers
    engine      training, inference, checkpoints, resume state and trackers, all under one Accelerator

The commands are thin and sit above every room: main.py, evaluate.py, scan.py, tune.py, bench/*.py,
`python -m src.synth`, `python -m src.synth.filterbank`, `python -m src.pack` (src/pack.py),
`python -m src.validate` (src/validate.py), `python -m src.pictures` (src/pictures.py).
The benchmarks' library is bench/lib/, outside this package. Importing any module does no work: no files, no
output, no global state.
"""
