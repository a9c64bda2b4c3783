"""Leave the process with its exit code once the work is done, skipping interpreter finalization.

temporalio's native bridge can call back into Python while the interpreter
finalizes and abort the process ("Fatal Python error: PyGILState_Release",
exit -6) after everything already succeeded (temporalio/sdk-python#300), as
`pipeline`'s own CLI knows (pipeline/cli.py). The entry points flush their
output and `os._exit` with the code they computed instead.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def leave(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
