import sys

from gligen_eval.cli import main

sys.exit(main())
