import sys

from ernie_cpt.cli import main

sys.exit(main())
