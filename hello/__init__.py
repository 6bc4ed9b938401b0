"""hello: a tiny, production-shaped Flask service for checking deployments."""

__version__ = "1.0.0"
