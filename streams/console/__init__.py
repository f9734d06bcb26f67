"""The operator console (issue 18, seed 003's hybrid screen): a web page and JSON API served by the stack.

``platsync console --operator NAME`` or ``python -m streams.console.server``; see docs/console.md.
"""
