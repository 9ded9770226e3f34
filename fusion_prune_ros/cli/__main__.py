"""`python -m fusion_prune_ros.cli`: the same command line without the console script (launch files run it this
way, so it need not be on PATH; under colcon it is not)."""
import sys

from . import main

sys.exit(main())
