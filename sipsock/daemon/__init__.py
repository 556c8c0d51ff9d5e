"""The daemon's service tree: one child service per part, started in order and stopped in reverse.

`service` holds the ordered parent; `resources`, `static`, `admin` the
children that hold a resource (state lock, store), the static sockets and the
admin front ends; `openers` routes a socket to a worker pool or this process;
`startup` the checks made before anything is built; `root` the daemon itself.
``sipsock.tap`` composes them.
"""
