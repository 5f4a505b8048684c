"""The base of every error this plugin raises for bad input or a request it cannot serve.

Its message names the problem and the fix. Our own command-line tools print that message alone (no traceback);
under nnU-Net's own CLIs (nnUNetv2_train) it is the last line of the output.
"""


class PluginError(Exception):
    """Bad input, caught before work is lost; the message names the problem and the fix."""
