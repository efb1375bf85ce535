"""The project's root exception; each package derives its own from it."""


class LearnstreamError(Exception):
    """Root of every error Learnstream raises on purpose."""


class ConfigurationError(LearnstreamError):
    """A setting is missing or inconsistent; the message says which and how to fix it."""


class ServiceUnavailableError(LearnstreamError):
    """A backing service (broker, PostgreSQL, Redis) did not answer."""
