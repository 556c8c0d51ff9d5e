"""The management interface: one command table, several front ends.

* `sipsock.mi.commands`: `CommandTable`, `MICommand`, `MIError`.
* `sipsock.mi.builtin`: `build_command_table` and the `MIRegistry` contract.
* Front ends: `amp` (``sipsock-mi``), `http` (``POST /mi``), `datagram`
  (UDP / UNIX), `fifo` (OpenSIPS's mi_fifo dialect), all speaking OpenSIPS's
  JSON-RPC dialect (`jsonrpc`) except AMP.
"""

from sipsock.mi.builtin import MIRegistry, build_command_table
from sipsock.mi.commands import CommandTable, MICommand, MIError

__all__ = ["CommandTable", "MICommand", "MIError", "MIRegistry", "build_command_table"]
