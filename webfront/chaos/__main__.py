import sys

from webfront.chaos.run import main

sys.exit(main())
