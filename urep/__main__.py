import sys

from urep.cli import main

sys.exit(main())
