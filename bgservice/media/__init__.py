"""Media I/O: probe (PyAV), decode (decord), encode (PyAV/x264), and every ffmpeg command line (ffmpeg.py)."""
