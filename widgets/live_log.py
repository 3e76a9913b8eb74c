"""A log that never stalls the screen: lines are buffered and written in batches (10 per second),
so a restore printing thousands of lines a second costs a few repaints, not thousands."""

from __future__ import annotations

from textual.widgets import Log

FLUSH_EVERY_S = 0.1


class LiveLog(Log):
    """``append`` from message handlers; ``search`` jumps to the next line containing a term."""

    DEFAULT_CSS = "LiveLog { height: 1fr; }"

    def __init__(self, *, max_lines: int = 50_000, id: str | None = None,
                 classes: str | None = None):
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self.pending: list[str] = []
        self.history: list[str] = []
        self.max_history = max_lines
        self.search_from = 0
        self.received = 0

    def on_mount(self) -> None:
        self.set_interval(FLUSH_EVERY_S, self.flush)

    def append(self, line: str) -> None:
        self.pending.append(line)
        self.received += 1

    def extend(self, lines: list[str]) -> None:
        self.pending.extend(lines)
        self.received += len(lines)

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.history.extend(batch)
        if len(self.history) > self.max_history:
            del self.history[: len(self.history) - self.max_history]
        self.write_lines(batch)

    def search(self, term: str) -> int | None:
        """Scroll to the next line (after the last hit) containing ``term``; its index or None."""
        self.flush()
        if not term:
            return None
        lowered = term.lower()
        count = len(self.history)
        for offset in range(count):
            index = (self.search_from + offset) % count
            if lowered in self.history[index].lower():
                self.auto_scroll = False
                self.scroll_to(y=max(0, index - 2), animate=False)
                self.search_from = index + 1
                self.border_subtitle = f"match at line {index + 1}: {term!r}"
                return index
        self.border_subtitle = f"no line contains {term!r}"
        return None

    def follow(self) -> None:
        """Back to following the end of the log."""
        self.auto_scroll = True
        self.border_subtitle = ""
        self.scroll_end(animate=False)
