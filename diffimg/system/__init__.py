"""The machine: safe file access beneath a root (safefs), filesystems and partitions, loop devices,
external tools, worker processes, HTTP, this run's temporary files."""
