"""Benchmarks: quality (matte vs ground truth) and speed. Importable so tests can reuse the keyer."""
