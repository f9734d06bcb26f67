"""The running engine's processes: the apply agent with its Faust app and worker, applied positions,
the barrier, heartbeats and the mode server."""
