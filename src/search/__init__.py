"""The classical searches for drifting narrowband signals: brute-force de-Doppler, the matched filter for a
straight drift, batched in torch, with the ON-minus-OFF cadence score and the aligned de-Doppler planes the
`dedoppler` view feeds the model (dedoppler.py); and Breakthrough Listen's turbo_seti as an optional reference
(turboseti.py). The search of real filterbank cadences will live here.

May import: core, data, synth.
"""
