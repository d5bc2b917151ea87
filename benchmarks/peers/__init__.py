"""Peer servers measured beside fastserve: each in a virtualenv of its own, serving the bundled `churn_mlp`."""
