"""Matte refinement and compositing: pure numpy / cv2 functions on float32 arrays."""
