"""``python -m tests.js``: install the gateway tests' Node.js client (see ``tests/js``)."""

import sys

from tests.js import main

sys.exit(main())
