"""The console's screens in a real pseudo-terminal, read back as a terminal would receive them.

- First frame: from starting the installed ``rollback-console -c CONFIG`` to the first frame of
  the home screen arriving on the terminal (reported; no target).
- Log flood: bench/flood_app.py floods the rollback screen's live log with 10,000 lines a second
  through the rollback worker's event channel while this module types into the screen's search
  input, one key every KEY_EVERY_S. A key's latency is from writing it to the terminal to the
  first output that shows it in the input; the text typed is random letters, and a key counts as
  shown when the last WINDOW letters up to it appear (so an earlier frame cannot match).
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import random
import re
import select
import statistics
import string
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from bench.common import Result

ROOT = Path(__file__).resolve().parent.parent
COLS, LINES = 120, 36
ANSI = re.compile(r"\x1b(?:\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|"
                  r"[PX^_][^\x1b]*\x1b\\|[@-Z\\-_])")
HOME_MARK = "read-only decision matrix"        # the home screen's Assess entry
SEARCH_MARK = "search the log"                 # the rollback screen's search input, open
RATE = 10_000          # lines a second
FLOOD_S = 10.0         # seconds of key presses inside the flood
KEY_EVERY_S = 0.05     # 20 keys a second
WARMUP_KEYS = 8
WINDOW = 8
LETTERS = "".join(c for c in string.ascii_lowercase if c != "q")   # q would quit elsewhere


class Terminal:
    """A child process on a pseudo-terminal of COLS x LINES; ``read`` returns the text it wrote
    (escape sequences removed) and keeps it in ``text``."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLS, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=ROOT, start_new_session=True, close_fds=True)
        os.close(slave)
        self.fd = master
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.carry = ""
        self.text = ""

    def read(self, timeout: float) -> str:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        try:
            raw = os.read(self.fd, 1 << 16)
        except OSError:   # the child closed the terminal
            return ""
        chunk = self.carry + self.decoder.decode(raw)
        cut = chunk.rfind("\x1b")
        if cut >= 0 and len(chunk) - cut < 64 and not ANSI.match(chunk, cut):
            chunk, self.carry = chunk[:cut], chunk[cut:]   # an escape split between reads
        else:
            self.carry = ""
        plain = ANSI.sub("", chunk)
        self.text = (self.text + plain)[-20_000:]
        return plain

    def wait_for(self, mark: str, timeout: float) -> float:
        """Seconds since the start when ``mark`` first showed."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            self.read(0.05)
            if mark in self.text:
                return time.perf_counter() - self.started
        raise RuntimeError(f"{mark!r} never showed; the screen had: {self.text[-500:]!r}")

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def close(self, timeout: float = 15) -> None:
        end = time.perf_counter() + timeout
        while self.proc.poll() is None and time.perf_counter() < end:
            self.read(0.05)   # keep draining, or the child blocks writing its last frames
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        os.close(self.fd)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",
                                                              "NO_COLOR", "TEXTUAL")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", ROLLBACK_CONSOLE_HOME=str(home),
               COLUMNS=str(COLS), LINES=str(LINES))
    return env


def first_frame(config_path: Path, work: Path, runs: int) -> Result:
    script = str(Path(sys.executable).parent / "rollback-console")
    env = _env(work / "home")
    times: list[float] = []
    for i in range(runs + 1):   # the first start warms the bytecode and file caches
        term = Terminal([script, "-c", str(config_path)], env)
        try:
            seconds = term.wait_for(HOME_MARK, 60)
            term.send("q")
        finally:
            term.close()
        if i:
            times.append(seconds)
            print(f"  first frame run {i}: {seconds:.3f}s", flush=True)
    return Result("TUI first frame (home screen)", times, [], "—", None,
                  [f"the installed console script on a {COLS}x{LINES} pseudo-terminal, from "
                   "process start until the home screen's menu arrives on the terminal; bytecode "
                   "cached (a warm-up start first)"], absolute=True)


def _flood_once(config_path: Path, work: Path, rate: int) -> tuple[list[float], int, int,
                                                                   dict[str, object]]:
    """(latencies of the measured keys, keys sent, keys shown, the app's own report). A key
    before the first full window counts as shown when the app's input holds every key."""
    rng = random.Random(9)
    keys = "".join(rng.choice(LETTERS) for _ in range(WARMUP_KEYS + int(FLOOD_S / KEY_EVERY_S)))
    result = work / "flood-result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.flood_app", str(config_path), str(work), str(rate),
           str(FLOOD_S + 3), str(len(keys)), str(result)]
    term = Terminal(cmd, _env(work / "home"))
    latencies: list[float] = []
    shown = 0
    try:
        term.wait_for(SEARCH_MARK, 60)
        stream = ""            # what arrived since the oldest key not yet seen
        base = 0               # stream's offset in everything received
        pending: list[tuple[int, float, int]] = []   # (key index, sent at, stream offset)
        next_key, next_at = 0, time.perf_counter()
        while next_key < len(keys) or pending:
            now = time.perf_counter()
            if next_key < len(keys) and now >= next_at:
                term.send(keys[next_key])
                if next_key + 1 >= WINDOW:
                    pending.append((next_key, time.perf_counter(), base + len(stream)))
                next_key += 1
                next_at += KEY_EVERY_S
                if next_key <= WARMUP_KEYS:   # let the warm-up letters show before timing
                    next_at = max(next_at, now + 0.3)
            plain = term.read(0.002)
            got = time.perf_counter()
            stream += plain
            still: list[tuple[int, float, int]] = []
            for index, sent_at, offset in pending:
                window = keys[max(0, index + 1 - WINDOW):index + 1]
                if window in stream[offset - base:]:
                    shown += 1
                    if index >= WARMUP_KEYS:
                        latencies.append(got - sent_at)
                elif got - sent_at > 5:
                    pass                              # lost: counted by shown < sent
                else:
                    still.append((index, sent_at, offset))
            pending = still
            if pending:
                drop = pending[0][2] - base - 2 * WINDOW
                if drop > 0:
                    stream, base = stream[drop:], base + drop
            else:
                stream, base = "", base + len(stream)
    finally:
        term.close(timeout=FLOOD_S + 30)
    report = json.loads(result.read_text()) if result.exists() else {}
    if report.get("typed") == keys:
        shown += WINDOW - 1
    return latencies, len(keys), shown, report


def flood(config_path: Path, work: Path, runs: int) -> list[Result]:
    p95s: list[float] = []
    p99s: list[float] = []
    idle95: list[float] = []
    handled: list[str] = []
    for i in range(runs):
        quiet, _, _, _ = _flood_once(config_path, work, 0)
        latencies, sent, shown, report = _flood_once(config_path, work, RATE)
        typed_ok = len(str(report.get("typed", ""))) == sent   # _flood_once compared them
        q = statistics.quantiles(latencies, n=100)
        p95s.append(q[94])
        p99s.append(q[98])
        idle95.append(statistics.quantiles(quiet, n=100)[94])
        rate = float(str(report.get("lines_sent", 0))) / float(str(report.get("flood_s") or 1))
        handled.append(f"{shown}/{sent} shown, input holds all {sent}: {typed_ok}")
        print(f"  flood run {i + 1}: p95 {p95s[-1] * 1000:.1f} ms, p99 {p99s[-1] * 1000:.1f} ms "
              f"(idle p95 {idle95[-1] * 1000:.1f} ms), keys {handled[-1]}, "
              f"{rate:,.0f} lines/s, log received {report.get('lines_received')}", flush=True)
        if not typed_ok or shown < sent:
            raise RuntimeError(f"keys lost under the flood: {handled[-1]}; {report}")
    notes = [f"{RATE:,} lines/s through RunContext.log → the event channel → the rollback "
             "screen's worker → coalesced RunnerEvents → LiveLog, for "
             f"{FLOOD_S + 3:g} s; keys typed into the log's search input for the middle "
             f"{FLOOD_S:g} s, one every {KEY_EVERY_S * 1000:.0f} ms, written to a "
             f"{COLS}x{LINES} pseudo-terminal; latency = until the terminal receives the frame "
             "showing the key",
             f"every run: all keys handled and shown ({handled[-1]})",
             f"p99 (median of runs): {statistics.median(p99s) * 1000:.1f} ms; the same keys "
             f"without the flood: p95 {statistics.median(idle95) * 1000:.1f} ms"]
    return [Result("TUI key-to-screen p95 under a 10,000 lines/s log flood", p95s, [], "—",
                   0.1, notes, absolute=True),
            Result("TUI key-to-screen p99 under a 10,000 lines/s log flood", p99s, [], "—",
                   None, [], absolute=True)]


def run(config_path: Path, work: Path, runs: int) -> list[Result]:
    return [first_frame(config_path, work, runs), *flood(config_path, work, runs)]
