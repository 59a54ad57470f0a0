"""The studies the harness re-runs, one module each; importing this package registers their
report builders with :mod:`parnn.bench.report`."""
