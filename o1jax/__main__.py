import sys

from o1jax.cli import main

sys.exit(main())
