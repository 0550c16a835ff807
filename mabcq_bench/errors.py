"""The one exception type that the CLI turns into a single line and a non-zero exit."""


class UserError(Exception):
    """Bad input or a state the user must fix (unknown task, corrupt dataset, ...).

    The message is one line that says what is wrong and, where possible, what to do.
    """
