"""Synthetic data: cadences in the Kaggle layout made with setigen, with their metadata (generator.py, the
command `python -m src.synth` in __main__.py), and the same signals drawn afresh and added to training batches
on the device (inject.py). The generator's signal parameters live in generator.py and injection reads them
from there, so the two draw the same signals. Filterbank cadences for the scan, six .h5/.fil files each with
true headers, bandpass, DC spike and a truth table, are made by filterbank.py (`python -m src.synth.filterbank`).
libraries.py imports setigen quietly for both.
snippets.py (`python -m src.synth.snippets`) makes labelled (6, 16, 256) snippets like the scan's candidates'.

May import: core, data.
"""
