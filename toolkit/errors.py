"""The ptk error hierarchy.

Every error a user can cause derives from :class:`PtkError`, so a command line can catch one
type, print its message and exit non-zero. Messages name the offending file or value and,
where there is a closed set, what is allowed.
"""

from __future__ import annotations

from os import PathLike


class PtkError(Exception):
    """Base class of every error ptk raises on bad input or bad configuration."""


class StructureError(PtkError):
    """A structure file that cannot be read or holds no usable protein chain."""

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(PtkError):
    """An unknown or invalid configuration key or value."""


class ShardError(PtkError):
    """A shard dataset that is missing, inconsistent or of an unsupported schema version."""


class FetchError(PtkError):
    """A data set that cannot be fetched or fails its checksum."""


def unknown_choice(kind: str, value: object, allowed: list[str] | tuple[str, ...]) -> ConfigError:
    """A ConfigError saying ``value`` is not one of ``allowed`` (the one place that message is built)."""
    listed = ", ".join(sorted(map(str, allowed)))
    return ConfigError(f"unknown {kind} {value!r}; allowed: {listed}")
