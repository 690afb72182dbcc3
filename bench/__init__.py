"""The benchmarks: commands in this folder (detection.py, throughput.py, ablation.py), their library in lib/."""
