"""Media I/O: probe, streaming decode and encode (PyAV), and every ffmpeg command line (ffmpeg.py)."""
