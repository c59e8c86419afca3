"""Stand-in for rasa.core.constants."""

DEFAULT_LOCK_LIFETIME = 60  # in seconds
