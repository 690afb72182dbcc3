"""The benchmarks' library, outside the product's package: the detection benchmark (detection.py), the
throughput benchmark (throughput.py) and the technique ablation (ablation.py).

May import: src (any room).
"""
