"""urep's benchmark suite: the papers' cost claims measured side by side, and urep's own speed.

Not installed with the package: run it from a checkout with `urep bench [--quick] --out DIR` (see
`benchmarks/README.md`) or `python -m benchmarks.suite --out DIR`.
"""
