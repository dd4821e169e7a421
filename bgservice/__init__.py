"""studio-background: remove or replace the background of videos."""

__version__ = "0.1.0"
