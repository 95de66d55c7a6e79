"""How much CPU reading a document may cost: in proportion to its size, so an honest 5 MB book is
read whole and a 30 KB file that deflates into a million PDF operators is refused within a couple
of seconds instead of holding a core (and, through the GIL, the service) for many.

The budget is the parsing thread's own CPU time (`time.thread_time`): parsing runs in a worker
thread (`formats.Parser`), and other threads' work does not count against it.
"""

import time
from dataclasses import dataclass

from parley.kit.errors import InvalidInput

# Every document gets this much, plus a second per BYTES_PER_CPU_SECOND of its bytes.
BASE_CPU_SECONDS = 2.0
BYTES_PER_CPU_SECOND = 100_000


@dataclass(slots=True)
class CpuBudget:
    seconds: float
    what: str  # "the PDF": how the refusal names the document
    _until: float = 0.0

    def __post_init__(self) -> None:
        self._until = time.thread_time() + self.seconds

    @classmethod
    def for_bytes(cls, size: int, *, what: str) -> "CpuBudget":
        return cls(BASE_CPU_SECONDS + size / BYTES_PER_CPU_SECOND, what)

    def check(self) -> None:
        """InvalidInput once the thread has spent the budget reading."""
        if time.thread_time() > self._until:
            raise InvalidInput(
                f"{self.what} takes more than {self.seconds:.1f} s of CPU to read, more than a file of its size "
                "should; it is refused (is it generated, or damaged?)"
            )
