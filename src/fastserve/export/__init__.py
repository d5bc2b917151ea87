"""Exporting trained pipelines into version folders fastserve serves."""
