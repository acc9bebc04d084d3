"""DaoHub: an OCI registry with an app store."""

__version__ = "0.1.0"
