"""Data-set manifests (TOML), ID lists and sample-data records, installed as package data.

Not a code package: ``ptk.fetching`` finds the manifests here through ``importlib.resources``.
See ``README.md`` in this folder for the manifest format.
"""
