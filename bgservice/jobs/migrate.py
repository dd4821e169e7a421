"""``python -m bgservice.jobs.migrate``: bring the job store's database to the newest schema and print its
revision (a deploy step for clusters; every :class:`~bgservice.jobs.store.JobStore` also does it at open)."""

from __future__ import annotations

import sys

from bgservice.errors import BgServiceError
from bgservice.jobs.store import JobStore
from bgservice.settings import get_settings


def main() -> int:
    try:
        with JobStore.from_settings(get_settings()) as store:
            print(f"{store.url.render_as_string(hide_password=True)} at revision {store.schema_revision()}")
    except BgServiceError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
