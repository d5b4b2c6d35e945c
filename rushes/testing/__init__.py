"""Support for offline tests, benchmarks and smoke runs: tiny random-weight models built from configs and saved
where ``from_pretrained`` loads them (no download), and a headless-browser driver for the HTML report.

Nothing in the stages imports this package; tests and ``bench/`` do (``bench/`` never imports ``tests/``).
"""
