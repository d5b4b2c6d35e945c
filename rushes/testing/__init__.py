"""Support for offline tests, benchmarks and smoke runs: tiny random-weight models built from configs and saved
where ``from_pretrained`` loads them (no download), a headless-browser driver for the HTML report, the CLI help
contract, synthetic footage and manifests, and a bad-input corpus with FIFO sentinels that record any open.

Nothing in the stages imports this package; tests and ``bench/`` do (``bench/`` never imports ``tests/``).
"""
