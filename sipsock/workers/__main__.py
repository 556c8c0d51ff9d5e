"""``python -m sipsock.workers``: one UDP worker process (see `sipsock.workers.worker`)."""

import sys

from sipsock.workers.worker import main

if __name__ == "__main__":
    sys.exit(main())
