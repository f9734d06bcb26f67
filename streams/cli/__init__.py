"""The ``platsync`` command line: the top layer, driving the embedded stack and everything below."""
