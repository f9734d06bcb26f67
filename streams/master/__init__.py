"""The MHLW medical institution master and its partial sync to the cloud (issue 16, docs/master.md)."""
