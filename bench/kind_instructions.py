"""Instructions per message of the general path, per message kind, under callgrind. Not a test.

Wall and CPU times swing with the load of a shared machine; instruction
counts do not. For each kind of `bench/options_path.py --kinds` (INVITE,
ACK, REGISTER, BYE, a 200 response), this runs the same program twice
under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``): both build the
same messages and pass the same warm-up through ``datagramReceived``
(general path, shortcut off), one then passes ``--number`` more; the
difference divided by ``--number`` is the cost of one message. Run from
anywhere, with ``PYTHONPATH`` naming the tree to measure::

    PYTHONPATH=TREE python TREE/bench/kind_instructions.py [--kinds INVITE,ACK] [--number 400]

Each kind takes a minute or two (valgrind runs about 70 times slower).

``--freeze-gc`` collects and freezes (``gc.freeze``) what the warm-up made
before counting: a full collection of the whole process (Twisted and all)
that falls inside the counted messages in one tree and not in the other
otherwise moves the figure by several thousand instructions per message
(a change of allocations alone shifts when it falls).
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: Messages of the warm-up (memos and plans learnt before counting).
WARM_UP = 200


def run_messages(kind: str, number: int, freeze_gc: bool = False) -> None:
    """Pass ``WARM_UP`` then ``number`` messages of ``kind`` through the general path."""
    sys.path.insert(0, str(Path(__file__).parent))
    import options_path

    make = next(make for name, make in options_path.KINDS.items() if name.startswith(kind))
    listener = options_path.general_listener()
    receive = listener.protocol.datagramReceived
    messages = [make(i) for i in range(WARM_UP + 2000)]
    for data in messages[:WARM_UP]:
        receive(data, options_path.PEER)
    listener.protocol.transport.written.clear()
    if freeze_gc:
        gc.collect()
        gc.freeze()
    for data in messages[WARM_UP : WARM_UP + number]:
        receive(data, options_path.PEER)


def instructions(kind: str, number: int, out: Path, freeze_gc: bool = False) -> int:
    """Instructions of the program that passes ``number`` messages of ``kind``."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--run",
        kind,
        "--number",
        str(number),
        *(["--freeze-gc"] if freeze_gc else []),
    ]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=1800)
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {out}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="INVITE,ACK,REGISTER,BYE,response")
    parser.add_argument("--number", type=int, default=400, help="messages counted (400)")
    parser.add_argument("--freeze-gc", action="store_true", help="gc.freeze() after the warm-up")
    parser.add_argument("--run", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_messages(args.run, args.number, args.freeze_gc)
        return
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.kinds.split(","):
            base = instructions(kind, 0, Path(scratch, f"{kind}.0"), args.freeze_gc)
            total = instructions(kind, args.number, Path(scratch, f"{kind}.n"), args.freeze_gc)
            print(f"  {(total - base) / args.number:9,.0f} instructions per message  {kind}")


if __name__ == "__main__":
    main()
