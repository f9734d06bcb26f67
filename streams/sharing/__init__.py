"""Sharing across the network (issue 15): share rules and share states of documents."""
