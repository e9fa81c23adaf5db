import sys

from wallwm_edge.cli import main

sys.exit(main())
