"""What loky's resource tracker runs when astra starts it (`backends.start_loky_tracker`):
loky's own `main`, imported without numpy.

Before its first worker, loky starts a resource tracker, a process that removes the
semaphores and temporary folders of workers that die before they can. loky starts it as
`python -c "from <main's module> import main; main(fd)"`, and importing loky runs joblib's
`__init__`, which imports numpy. The tracker took 0.17 to 0.2 s of CPU, and takes 0.08 s
without numpy, while the workers start, on the cores they need. It handles names of
semaphores and folders, never an array, and joblib runs without numpy as where numpy is not
installed.

The invoking process imports this module too when it starts loky's helpers early
(`warmstart.start_helpers`): it passes no array to a worker either (its tasks carry paths and
options). numpy stays hidden only when neither numpy nor joblib was imported before, so that
a process which already uses them keeps them as they are.
"""

import sys

if "numpy" in sys.modules or "joblib" in sys.modules:
    from joblib.externals.loky.backend.resource_tracker import main
else:
    # None in sys.modules makes `import numpy` raise ImportError, as where it is absent.
    sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        from joblib.externals.loky.backend.resource_tracker import main
    finally:
        del sys.modules["numpy"]

__all__ = ["main"]
