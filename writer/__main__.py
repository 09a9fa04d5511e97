import sys

from genesis_flow.cli import main

sys.exit(main(["writer", *sys.argv[1:]]))
