"""The benchmarks' library, outside the product's package: the detection benchmark (detection.py), the
throughput benchmark (throughput.py), the technique ablation (ablation.py), and the filterbank scan against
turbo_seti (scan.py, with turboseti_runner.py, the script turbo_seti's own interpreter runs).

May import: src (any room).
"""
