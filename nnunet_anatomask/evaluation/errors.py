"""The one error the evaluation harness raises: its message names the problem and the fix. Only the command line
(``evaluation/cli.py``) turns it into an exit."""


class EvaluationError(RuntimeError):
    """The evaluation cannot go on; the message says why and what to do."""
