import sys

from genesis_flow.cli import main

sys.exit(main(["query", *sys.argv[1:]]))
