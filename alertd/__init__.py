"""alertd: a real-time margin alert daemon for leveraged crypto futures."""

__version__ = "0.1.0"
