import sys

from weightlint.cli import main

sys.exit(main())
