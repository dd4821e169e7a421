"""Bytes in and out: what a URL is (:mod:`.paths`) and safe fetching of sources (:mod:`.fetch`).

Publishing results lives in :mod:`bgservice.storage` (fsspec out), which also keeps the trusting
``local_input`` the CLI and batch use; the service's rules for stranger's URLs are in :mod:`.fetch`.
"""
