import sys

from busray.cli import main

sys.exit(main())
