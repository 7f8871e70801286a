"""``statesync launch``: every node of a folder as a supervised child process.

Each ``*.toml`` file of the folder is one node, run as ``statesync node FILE``
in a child process. The supervisor:

- prefixes each line a child prints with its node id, in a colour per node;
- restarts a child that exits without being asked to, after a backoff that
  doubles from ``backoff_min_s`` to ``backoff_max_s`` (reset once a child ran
  for ``stable_s``); after ``restarts_max`` quick failures in a row, or a
  configuration error (exit code 2), it gives up on that node;
- on stop (Ctrl-C, SIGTERM) sends SIGTERM to every child (each flushes and
  says BYE to its peers), waits ``stop_grace_s``, then SIGKILLs what is left.

No child outlives the launcher: children run in their own session (so a
terminal's Ctrl-C reaches only the launcher, which stops them in order), and
each child asks the kernel for SIGTERM when the launcher dies
(PR_SET_PDEATHSIG, set by ``statesync node`` when ``STATESYNC_PARENT_PID`` is
in its environment), which covers a launcher killed by SIGKILL. The kernel
sends that signal when the *thread* that forked the child ends, so children
are forked with ``subprocess.Popen`` from the thread that runs trio (which
lives as long as they do), not with ``trio.open_process`` (which forks from a
worker thread that may end any time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import trio

from statesync.cli._errors import EXIT_FAILED, EXIT_OK, UsageError
from statesync.cli._nodecmd import ENV_PARENT, read_toml
from statesync.cli._output import COLORS, clock, paint

LINE_BYTES_MAX = 64 << 10
"""A longer line from a child is cut into pieces of this size."""
EXIT_CONFIG = 2


@attrs.define
class NodeSpec:
    """One node to run: its id, its TOML file, and the command line."""

    name: str
    config: Path | None
    argv: list[str]
    data: dict[str, Any] = attrs.field(factory=dict)


def node_command(config: Path | None, extra: Sequence[str] = ()) -> list[str]:
    args = [sys.executable, "-m", "statesync.cli", "node"]
    if config is not None:
        args.append(str(config))
    return [*args, *extra]


def load_folder(folder: Path, extra: Sequence[str] = ()) -> list[NodeSpec]:
    """The nodes defined in ``folder``: one ``*.toml`` file each, in name order."""
    if not folder.exists():
        raise UsageError(f"{folder} does not exist; give a folder of node TOML files (default: nodes/), or write one with `statesync init {folder}`")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give a folder of node TOML files (statesync node takes one file)")
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise UsageError(f"{folder} holds no *.toml node definitions; write a three-node one with `statesync init {folder}`")
    specs = []
    seen: dict[str, Path] = {}
    for file in files:
        data = read_toml(file)
        name = data.get("node_id")
        if not isinstance(name, str) or not name:
            raise UsageError(f"{file} has no node_id; every node file needs node_id = \"...\"")
        if name in seen:
            raise UsageError(f"{file} and {seen[name]} both define node_id = {name!r}; node ids must be unique")
        seen[name] = file
        specs.append(NodeSpec(name, file, node_command(file.resolve(), extra), data))
    return specs


class ChildProcess:
    """A child started with Popen in the trio thread, awaited through a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        assert popen.stdout is not None
        self.stdout = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
        popen.stdout.close()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            pidfd = os.pidfd_open(self.pid)
        if pidfd is not None:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
            return self.popen.wait()
        while self.popen.poll() is None:  # no pidfd (old kernel): poll
            await trio.sleep(0.05)
        return self.popen.returncode

    def send_signal(self, sig: int) -> None:
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)


def _flag(obj: object, name: str) -> bool:
    """Read a flag that other tasks change while this one waits (keeps mypy from narrowing it)."""
    return bool(getattr(obj, name))


def spawn(argv: Sequence[str], env: dict[str, str]) -> ChildProcess:
    """Start a child node process (output piped, own session, dies with us)."""
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**env, ENV_PARENT: str(os.getpid()), "PYTHONUNBUFFERED": "1"},
    )
    return ChildProcess(popen)


@attrs.define(eq=False)
class _Child:
    spec: NodeSpec
    color: str
    proc: ChildProcess | None = None
    started_at: float = 0.0
    held: bool = False
    release: trio.Event = attrs.field(factory=trio.Event)
    exited: trio.Event = attrs.field(factory=trio.Event)
    up: trio.Event = attrs.field(factory=trio.Event)
    gave_up: bool = False
    restarts: int = 0
    last_code: int | None = None


class Supervisor:
    """Runs and supervises child node processes (see the module doc)."""

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        *,
        out: IO[str] | None = None,
        color: bool = False,
        echo: bool = True,
        log_dir: Path | None = None,
        restarts_max: int = 5,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 10.0,
        stable_s: float = 30.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.children = {s.name: _Child(s, COLORS[i % len(COLORS)]) for i, s in enumerate(specs)}
        self.out = out if out is not None else sys.stdout
        self.color = color
        self.echo = echo
        self.log_dir = log_dir
        self.restarts_max = restarts_max
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.stop_grace_s = stop_grace_s
        self.stopping = False
        self._stop_event = trio.Event()
        self._width = max((len(s.name) for s in specs), default=1)
        self._logs: dict[str, IO[str]] = {}
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    # -- output

    def say(self, text: str) -> None:
        """A line from the launcher itself."""
        if self.echo:
            self.out.write(f"{paint('launch', '1', self.color)} {' ' * max(0, self._width - 6)}| {text}\n")
            self.out.flush()

    def _line(self, child: _Child, line: str) -> None:
        name = child.spec.name
        if self.echo:
            prefix = paint(name.ljust(self._width), child.color, self.color)
            self.out.write(f"{prefix} | {line}\n")
            self.out.flush()
        log = self._logs.get(name)
        if log is None and self.log_dir is not None:
            log = self._logs[name] = open(self.log_dir / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115
        if log is not None:
            log.write(line + "\n")
            log.flush()

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    # -- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> bool:
        """Start every child and keep them running until :meth:`stop`; True unless a node was given up."""
        try:
            async with trio.open_nursery() as nursery:
                for child in self.children.values():
                    nursery.start_soon(self._keep, child)
                task_status.started()
        finally:
            for log in self._logs.values():
                log.close()
            self._logs.clear()
        return not any(c.gave_up for c in self.children.values())

    async def _keep(self, child: _Child) -> None:
        spec = child.spec
        failures = 0
        backoff = self.backoff_min_s
        env = dict(os.environ)
        while not self.stopping:
            if child.held:
                await child.release.wait()
                continue
            child.exited = trio.Event()
            try:
                proc = spawn(spec.argv, env)
            except OSError as exc:
                self.say(f"cannot start {spec.name}: {exc}; giving up on it")
                child.gave_up = True
                child.exited.set()
                return
            child.proc = proc
            child.started_at = trio.current_time()
            child.up.set()
            async with trio.open_nursery() as pump:
                pump.start_soon(self._pump, child, proc.stdout)
                code = await proc.wait()
            child.proc = None
            child.last_code = code
            child.up = trio.Event()
            child.exited.set()
            if _flag(self, "stopping"):
                return
            if _flag(child, "held"):
                continue
            ran = trio.current_time() - child.started_at
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
            if code == EXIT_CONFIG:
                self.say(f"{spec.name} exited with {how} (a configuration error); not restarting it: fix {spec.config}")
                child.gave_up = True
                return
            if ran >= self.stable_s:
                failures = 0
                backoff = self.backoff_min_s
            failures += 1
            if failures > self.restarts_max:
                self.say(f"{spec.name} exited with {how}; it failed {failures} times in a row: giving up on it")
                child.gave_up = True
                return
            self.say(f"{spec.name} exited with {how} after {ran:.1f} s; restarting it in {backoff:.1f} s")
            child.restarts += 1
            with trio.move_on_after(backoff):
                await self._stop_event.wait()
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _pump(self, child: _Child, stream: trio.abc.ReceiveStream) -> None:
        buf = b""
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    data = b""
                if not data:
                    break
                buf += data
                while b"\n" in buf or len(buf) > LINE_BYTES_MAX:
                    cut = buf.find(b"\n")
                    if cut < 0 or cut > LINE_BYTES_MAX:
                        line, buf = buf[:LINE_BYTES_MAX], buf[LINE_BYTES_MAX:]
                    else:
                        line, buf = buf[:cut], buf[cut + 1 :]
                    self._line(child, line.decode("utf-8", "replace").rstrip("\r"))
        if buf:
            self._line(child, buf.decode("utf-8", "replace"))

    # -- control

    def pids(self) -> dict[str, int]:
        return {name: c.proc.pid for name, c in self.children.items() if c.proc is not None}

    async def kill(self, name: str, sig: int = signal.SIGKILL, *, hold: bool = True) -> int | None:
        """Signal one child and wait for it to exit; with ``hold`` it stays down until :meth:`release`."""
        child = self.children[name]
        if hold:
            child.held = True
            child.release = trio.Event()
        proc = child.proc
        if proc is None:
            return child.last_code
        exited = child.exited
        proc.send_signal(sig)
        await exited.wait()
        return child.last_code

    async def release(self, name: str) -> None:
        """Let a held child run again, and wait until its process started."""
        child = self.children[name]
        child.held = False
        child.release.set()
        await child.up.wait()

    async def stop(self) -> None:
        """SIGTERM every child, wait up to ``stop_grace_s``, SIGKILL the rest."""
        self.stopping = True
        self._stop_event.set()
        for child in self.children.values():
            child.release.set()
        running = [c for c in self.children.values() if c.proc is not None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.stop_grace_s):
            for child in running:
                await child.exited.wait()
        for child in running:
            if not child.exited.is_set() and child.proc is not None:
                self.say(f"{child.spec.name} did not stop within {self.stop_grace_s:g} s; killing it")
                child.proc.send_signal(signal.SIGKILL)
        with trio.move_on_after(5.0):
            for child in running:
                await child.exited.wait()


async def launch(specs: Sequence[NodeSpec], *, color: bool, restarts_max: int) -> int:
    """Run the nodes until Ctrl-C / SIGTERM; exit code 0 after a clean stop."""
    sup = Supervisor(specs, color=color, restarts_max=restarts_max)
    names = ", ".join(s.name for s in specs)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    sup.say(f"{signal.Signals(signum).name}: stopping {names}")
                    await sup.stop()
                    return

            nursery.start_soon(on_signal)
            sup.say(f"{clock()} starting {names} (pid {os.getpid()}); Ctrl-C stops them all")
            ok = await sup.run()
            nursery.cancel_scope.cancel()
    return _launch_result(sup, ok)


def _launch_result(sup: Supervisor, ok: bool) -> int:
    if not ok and not sup.stopping:
        sup.say("every node has stopped or was given up; exiting")
        return EXIT_FAILED
    sup.say("all nodes stopped")
    return EXIT_OK
