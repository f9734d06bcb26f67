"""The PLAT Sync benchmark: ``platsync bench [--quick] [--json PATH]`` (see bench/RESULTS.md)."""
