"""The error a configuration that cannot work raises."""


class ConfigurationError(Exception):
    """The options cannot make a working agent; the message names the option."""
