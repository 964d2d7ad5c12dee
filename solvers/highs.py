"""A quiet HiGHS instance for the solvers that drive ``highspy`` directly."""

from __future__ import annotations


def new_highs():
    """A ``highspy.Highs`` with console output off. Its constructor prints a banner on the C-level
    standard output before any option can be set (highspy 1.16), which would corrupt ``--json``
    output: the file descriptor is pointed at ``/dev/null`` while it is built."""
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h
