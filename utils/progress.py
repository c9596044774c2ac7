"""What a loop shows while it runs, on the first process only."""
from typing import Dict, Optional

from tqdm import tqdm

from .distributed import process_rank


class Progress:
    """A tqdm bar over `total` steps starting at `initial`; `show(values)` updates its numbers."""

    def __init__(self, label: str, total: int, initial: int = 0, enabled: bool = True):
        self.bar = tqdm(total=total, initial=initial, desc=label, disable=not (enabled and process_rank() == 0),
                        dynamic_ncols=True, leave=False)

    def advance(self, values: Optional[Dict[str, str]] = None) -> None:
        """One step done; `values` (already formatted) when the loop has just read its metrics."""
        if values is not None:
            self.bar.set_postfix(values, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
