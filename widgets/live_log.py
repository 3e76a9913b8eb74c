"""A log that never stalls the screen: lines are buffered and written in batches (10 per second),
so a restore printing thousands of lines a second costs a few repaints, not thousands. Every
line also goes to ``log_file`` when one is set (the screen shows a pane's width; the file has
the whole line)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Log

FLUSH_EVERY_S = 0.1


class LiveLog(Log):
    """``append`` from message handlers; ``search`` jumps to the next line containing a term."""

    DEFAULT_CSS = "LiveLog { height: 1fr; }"

    def __init__(self, *, max_lines: int = 50_000, id: str | None = None,
                 classes: str | None = None):
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self.pending: list[str] = []
        self.file_pending: list[str] = []   # lines for the log file only (condensed on screen)
        self.history: list[str] = []
        self.max_history = max_lines
        self.search_from = 0
        self.received = 0
        self.log_file: Path | None = None
        self.marked: int | None = None   # the line a search found, if any

    def on_mount(self) -> None:
        self.set_interval(FLUSH_EVERY_S, self.flush)

    def append(self, line: str) -> None:
        self.pending.append(line)
        self.file_pending.append(line)
        self.received += 1

    def record(self, line: str) -> None:
        """Into the log file only: tool output the screen condenses to a progress line."""
        self.file_pending.append(line)

    def extend(self, lines: list[str]) -> None:
        self.pending.extend(lines)
        self.file_pending.extend(lines)
        self.received += len(lines)

    def flush(self) -> None:
        to_file, self.file_pending = self.file_pending, []
        if to_file and self.log_file is not None:
            try:
                with self.log_file.open("a", encoding="utf-8") as out:
                    out.write("".join(line + "\n" for line in to_file))
            except OSError:
                self.log_file = None   # a full disk must not stop the screen
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.history.extend(batch)
        if len(self.history) > self.max_history:
            del self.history[: len(self.history) - self.max_history]
        self.write_lines(batch)
        if self.auto_scroll:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

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
                self.marked = index
                self.border_subtitle = f"match at line {index + 1}: {term!r}"
                return index
        self.border_subtitle = f"no line contains {term!r}"
        return None

    def follow(self) -> None:
        """Back to following the end of the log."""
        self.flush()
        self.auto_scroll = True
        self.marked = None
        self.border_subtitle = ""
        self.scroll_end(animate=False)

    def current(self) -> int:
        """The line a search found, else the last one."""
        self.flush()
        return self.marked if self.marked is not None else len(self.history) - 1
