import sys

from app.simulator.cli import main

sys.exit(main())
