"""The classical searches for drifting narrowband signals. On Kaggle snippets: brute-force de-Doppler, the matched
filter for a straight drift, batched in torch, with the ON-minus-OFF cadence score and the aligned de-Doppler
planes the `dedoppler` view feeds the model (dedoppler.py); and Breakthrough Listen's turbo_seti as an optional
reference (turboseti.py). On real filterbank cadences (`scan.py`): the cadence and its checks (cadence.py),
cleaning a coarse channel (clean.py), the Taylor-tree hit search (hits.py), the cadence filter (events.py), the
chunked, resumable scan and its engines (scan.py), and its files and pictures (outputs.py, plots.py).

May import: core, data, synth.
"""
