"""urep's benchmark suite: the papers' cost claims measured side by side, and urep's own speed.

Run it with `urep bench [--quick] --out DIR` or `python -m urep.bench.suite --out DIR`; what each
benchmark measures, the choices behind it and the measured numbers are in `docs/benchmarks.md`.
"""
