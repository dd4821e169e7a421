import sys

from bgservice.cli import main

sys.exit(main())
