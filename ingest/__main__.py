import sys

from genesis_flow.cli import main

sys.exit(main(["ingest", *sys.argv[1:]]))
