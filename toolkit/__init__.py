"""ptk: a toolkit for protein-structure machine learning.

Core library (this package, folder ``toolkit/``): residue constants, structure reading,
geometry, shard schemas and datasets, metrics and plots. Models live in :mod:`ptk.models`,
the command line and orchestration in :mod:`ptk.pipelines`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("ptk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
