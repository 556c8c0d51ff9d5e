"""Print the CPU of sipsock's TLS layer per read and answer, in process.

Not a test. Run from the repository root::

    .venv/bin/python bench/tls_path.py [--number 20000] [--reps 3]

One server connection of a TLS socket (`ReadBatchingTLSProtocol` over a real
TCP transport on a socket pair, a trustme certificate), and a standard-library
TLS client on memory buffers. The client's records are made first (one
OPTIONS each); then each is handed to the server as one read, which frames
the message, answers it (a fixed 200 from the test sink, not the
Dispatcher) and encrypts the answer to the socket. Printed: thread CPU
microseconds per read + answer, the best of ``--reps`` runs. No reactor
runs, and the socket is emptied every 200 answers.

For instruction counts (a loaded machine), run it under callgrind twice
with the same ``--build`` and ``--number 0`` then N, and divide the
difference by N::

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python bench/tls_path.py \\
        --build 2000 --number 2000 --reps 1
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

# Last: a tree named by PYTHONPATH (the code before a change) is measured instead.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import sipsock
from tests.sip_probe import options_request
from tests.unit.transport.test_tlswrite import _Pair

#: Answers read back from the socket pair at once (its buffer must not fill).
DRAIN_EVERY = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="reads per run")
    parser.add_argument("--reps", type=int, default=3, help="runs (the best is printed)")
    parser.add_argument("--build", type=int, help="client records made (default: all runs')")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pair = _Pair(Path(directory))
        message = options_request("127.0.0.1", 5061, 40000, "TLS")
        records = []
        for _ in range(args.build if args.build is not None else args.number * args.reps):
            pair.client.write(message)
            records.append(pair.outgoing.read())
        received = pair.tls.dataReceived
        figures = []
        for rep in range(args.reps):
            chunk = records[rep * args.number : (rep + 1) * args.number]
            gc.collect()
            started = time.thread_time()
            for index, record in enumerate(chunk):
                received(record)
                if index % DRAIN_EVERY == DRAIN_EVERY - 1:
                    pair.receive()
            spent = time.thread_time() - started
            pair.receive()
            if chunk:
                figures.append(spent / len(chunk) * 1e6)
        if figures:
            print(f"sipsock from {Path(sipsock.__file__).parent}")
            print(
                f"TLS read + answer: {min(figures):.2f} us (best of {len(figures)}; "
                f"{', '.join(f'{f:.2f}' for f in figures)}), {len(message)}-byte OPTIONS"
            )
        pair.close()


if __name__ == "__main__":
    main()
