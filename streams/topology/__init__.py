"""The network topology (issue 14): nodes (hospitals and common servers) and the links between them.

:mod:`streams.topology.model` holds the validated, immutable model and derives the links from the
API matrix; :mod:`streams.topology.load` reads and validates a topology file;
:mod:`streams.topology.render` prints it for ``platsync topology show``.
"""
