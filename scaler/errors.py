"""The one exception family a user can cause; the CLI turns it into one line and exit status 2."""


class ScalerError(ValueError):
    """Bad input from the user: a wrong option, a malformed spec, an impossible request."""


class SpecError(ScalerError):
    """A spec that cannot describe a network; the message starts with the offending field."""
