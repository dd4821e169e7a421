"""Segmentation models behind one small interface, chosen by name."""
