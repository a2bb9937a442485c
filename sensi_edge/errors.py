"""One exception type for every problem a user can fix; the CLI prints it as one line and exits 2."""


class SensiEdgeError(Exception):
    """A user-facing error: the message names the problem and the fix."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when the message is empty), for one-line errors."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
