"""One exception type for every problem a user can fix; the CLI prints it as one line and exits 2."""


class SensiEdgeError(Exception):
    """A user-facing error: the message names the problem and the fix."""
