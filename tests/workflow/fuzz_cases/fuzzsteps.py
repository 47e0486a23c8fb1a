"""Step functions of the fuzz cases (imported by a dry run, never called)."""


def work(**kwargs: object) -> int:
    return len(kwargs)
