"""The installed version, read from package metadata (pyproject.toml is the only source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astra-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
