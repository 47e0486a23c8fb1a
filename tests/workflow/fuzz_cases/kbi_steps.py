"""A step module whose top-level code raises KeyboardInterrupt (a BaseException)."""

raise KeyboardInterrupt
