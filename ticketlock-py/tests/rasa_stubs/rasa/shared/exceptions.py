"""Stand-in for rasa.shared.exceptions: the two classes the lock store uses."""


class RasaException(Exception):
    """Base class of Rasa's errors."""


class ConnectionException(RasaException):
    """Raised when a connection to a 3rd party service fails."""
