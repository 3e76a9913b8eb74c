"""The footer of every screen: the screen's keys on the left (scrolling if they do not fit),
and `esc Back  ? Help  q Quit` pinned on the right, so a narrow terminal (80 columns) never
hides the keys that lead back and everywhere else."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

PINNED = ("escape", "help", "request_quit")   # escape by key: its action differs per screen


class ConsoleFooter(Footer):
    DEFAULT_CSS = """
    ConsoleFooter .footer-pinned {
        dock: right;
        width: auto;
        height: 1;
        background: $footer-background;
    }
    """

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        seen: set[str] = set()
        keys: list[FooterKey] = []
        pinned: dict[str, FooterKey] = {}
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = FooterKey(binding.key, self.app.get_key_display(binding),
                            binding.description, binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)
            slot = "escape" if binding.key == "escape" else binding.action
            if slot in PINNED:
                pinned[slot] = key
            else:
                keys.append(key)
        yield from keys
        if pinned:
            yield HorizontalGroup(*[pinned[a] for a in PINNED if a in pinned],
                                  classes="footer-pinned")   # (an id clashed when two
            # recomposes overlapped: DuplicateIds on a screen whose work failed at once)
