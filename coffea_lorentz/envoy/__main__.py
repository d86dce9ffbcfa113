"""``python -m coffea_lorentz.envoy UPSTREAM...``: print an Envoy configuration for those servers."""

import sys

from . import main

sys.exit(main())
