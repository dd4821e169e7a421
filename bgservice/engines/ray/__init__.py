"""Ray actors wrapping bgservice's core: decoder, Segmenter pool, compositor, encoder; dag.py runs a job."""
