"""A real Neo4j 5.26 LTS Community server that kgrec installs and runs itself.

The server jars (and Neo4j Browser) come from Maven Central through ``kg/neo4j-pom.xml``
(``mvn dependency:copy-dependencies``), and run with
``java org.neo4j.server.CommunityEntryPoint --home-dir=... --config-dir=...``.
Everything lives under ``Neo4jConfig.home`` (git-ignored): ``lib/``, ``conf/``, ``data/``,
``logs/``, ``run/neo4j.pid`` and the generated password (mode 0600).
"""
from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from kgrec.config import Neo4jConfig

from . import store_swap
from .errors import Neo4jSetupError

logger = logging.getLogger(__name__)

ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
LOCK_WAIT_S = 900.0  # beyond start_timeout_s, how long a start waits for another's (an install among it)
ADMIN_TOOL = "org.neo4j.cli.AdminTool"
# The JVM flags Neo4j's own launcher (bin/neo4j) starts the server with by default. A direct
# ``java ... CommunityEntryPoint`` start must pass them itself, and the heap too: the launcher turns
# ``server.memory.heap.*`` into -Xms/-Xmx, the server never reads them.
JVM_OPTIONS = ("-XX:+UseG1GC", "-XX:-OmitStackTraceInFastThrow", "-XX:+AlwaysPreTouch",
               "-XX:+UnlockExperimentalVMOptions", "-XX:+TrustFinalNonStaticFields", "-XX:+DisableExplicitGC",
               "-Djdk.nio.maxCachedBufferSize=1024", "-Dio.netty.tryReflectionSetAccessible=true",
               "-Djdk.tls.ephemeralDHKeySize=2048", "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
               "-Dlog4j2.disable.jmx=true", "-XX:+ExitOnOutOfMemoryError", "-Dfile.encoding=UTF-8",
               "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
               "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED")
LOGS = ("console.log", "neo4j.log")  # in <home>/logs: the JVM's output, and Neo4j's own log
_MEMORY_SIZE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def _memory_size(value: object, name: str) -> str:
    """``value`` as a JVM memory size (``2g``, ``512m``); anything else (a line break that would
    write another setting into neo4j.conf, say) is refused.

    Raises:
        Neo4jSetupError: not such a size.
    """
    text = str(value).strip()
    if not _MEMORY_SIZE.fullmatch(text):
        raise Neo4jSetupError(f"neo4j.{name} must be a size such as 2g or 512m, not {text!r}")
    return text


@dataclass
class ServerStatus:
    """What ``kgrec neo4j status`` reports."""

    running: bool
    pid: int | None
    bolt_uri: str
    browser_url: str
    password_file: Path
    home: Path
    # this home's server process lives but does not answer on the configured Bolt port: why, as far
    # as can be told (still starting; started by an earlier config); None otherwise
    unanswering: str | None = None

    def describe(self) -> str:
        state = (f"running (pid {self.pid})" if self.running else f"process alive (pid {self.pid}), {self.unanswering}"
                 if self.unanswering else "stopped")
        password = f"in {self.password_file.resolve()}" if self.password_file.exists() else \
            "none yet (the first start generates one)"
        return (f"Neo4j {state}\n  Bolt:     {self.bolt_uri}\n  Browser:  {self.browser_url}"
                f"\n  user:     neo4j\n  password: {password}")


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise Neo4jSetupError(f"{tool} not found on PATH: {hint}")
    return path


def _java() -> str:
    java = _require("java", "install a Java 17 runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = java_major_version(out)
    if major and major < 17:
        raise Neo4jSetupError(f"Neo4j 5.26 needs Java 17 or newer; found Java {major}: install openjdk-17")
    return java


def java_major_version(version_output: str) -> int:
    """Java's major version from ``java -version`` output (``"1.8.0_292"`` is 8, ``"17.0.9"`` is 17);
    0 when it cannot be read (then let through)."""
    # not the first quoted string: a "Picked up JAVA_TOOL_OPTIONS: -Dx="..."" line can come before
    found = re.search(r'version "([^"]+)"', version_output)
    parts = re.findall(r"\d+", found.group(1)) if found else []
    if not parts:
        return 0
    return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class ManagedNeo4j:
    """Install, start, stop and report on kgrec's own Neo4j server."""

    def __init__(self, config: Neo4jConfig) -> None:
        if not config.managed:
            raise Neo4jSetupError("NEO4J_URI is set: kgrec uses that server and manages none")
        for name in ("bolt_port", "http_port"):  # else a traceback from the socket module, or port 0: any port
            port = getattr(config, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise Neo4jSetupError(f"neo4j.{name} must be a port from 1 to 65535, got {port!r}")
        if config.bolt_port == config.http_port:
            raise Neo4jSetupError(f"neo4j.bolt_port and neo4j.http_port are both {config.bolt_port}: Bolt and HTTP "
                                  f"each need a port of their own")
        self.config = config
        self.home = config.home.resolve()
        self._exclusive = False  # inside exclusive(): start() takes no second flock on the lock file
        # inside exclusive(), the lock file's descriptor: a child given it holds the lock while it runs,
        # past this process's death (bulk import's neo4j-admin: no start may recover its swap meanwhile)
        self.lock_fd: int | None = None

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "neo4j.pid"

    @property
    def browser_url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}/browser/"

    def _marker(self) -> Path:
        return self.lib_dir / f".installed-{self.config.version}-{self.config.browser_version}"

    def install(self) -> None:
        """Fetch the server and Browser jars with Maven (once; a marker file records it)."""
        if self._marker().exists():
            return
        mvn = _require("mvn", "install Apache Maven (Debian/Ubuntu: apt-get install maven)")
        _java()
        # a new version goes into an empty lib/: two versions' jars on one classpath clash
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        pom = resources.files("kg").joinpath("neo4j-pom.xml")
        with resources.as_file(pom) as pom_path:
            cmd = [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                   f"-DoutputDirectory={self.lib_dir}", f"-Dneo4j.version={self.config.version}",
                   f"-Dneo4j.browser.version={self.config.browser_version}"]
            logger.info("installing Neo4j %s from Maven Central into %s", self.config.version, self.lib_dir)
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise Neo4jSetupError(f"Maven could not fetch org.neo4j:neo4j:{self.config.version}:\n{tail}")
        for old in self.lib_dir.glob(".installed-*"):
            old.unlink()
        self._marker().touch()

    def jvm_options(self) -> list[str]:
        """JVM flags for the server: the configured heap as -Xms/-Xmx plus :data:`JVM_OPTIONS`.

        Raises:
            Neo4jSetupError: the heap size is not a JVM memory size such as ``2g`` or ``512m``.
        """
        heap = _memory_size(self.config.heap, "heap")
        return [f"-Xms{heap}", f"-Xmx{heap}", *JVM_OPTIONS]

    def _write_conf(self) -> Path:
        c = self.config
        heap, pagecache = _memory_size(c.heap, "heap"), _memory_size(c.pagecache, "pagecache")  # nothing else
        conf_dir = self.home / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        dirs = {d: self.home / d for d in ("data", "logs", "plugins", "run", "import")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        lines = [
            "# written by kgrec (kg/neo4j_server.py); edits are overwritten on start",
            "server.default_listen_address=127.0.0.1",
            "server.default_advertised_address=127.0.0.1",
            f"server.bolt.listen_address=127.0.0.1:{c.bolt_port}",
            f"server.http.listen_address=127.0.0.1:{c.http_port}",
            # what the server tells clients (Browser's connect form) is where it listens, not 7687/7474
            f"server.bolt.advertised_address=127.0.0.1:{c.bolt_port}",
            f"server.http.advertised_address=127.0.0.1:{c.http_port}",
            "server.https.enabled=false",
            "dbms.security.auth_enabled=true",
            f"server.memory.heap.initial_size={heap}",
            f"server.memory.heap.max_size={heap}",
            f"server.memory.pagecache.size={pagecache}",
            "db.tx_log.rotation.retention_policy=1G size",
            "dbms.usage_report.enabled=false",
            # one server: a bookmark it is behind was made by a database a bulk import replaced, and
            # waiting for it is pointless (kg.connection goes on without it); 30 s by default
            "db.transaction.bookmark_ready_timeout=2s",
            *(f"server.directories.{name}={path}" for name, path in dirs.items()),
        ]
        (conf_dir / "neo4j.conf").write_text("\n".join(lines) + "\n")
        return conf_dir

    def _private_data(self) -> None:
        """Make ``data/`` (the store, auth.ini) its owner's alone: no other local user reads
        around authentication."""
        try:
            (self.home / "data").chmod(0o700)
        except OSError as e:
            raise Neo4jSetupError(f"cannot make {self.home / 'data'} private to its owner: {e}") from e

    def _ensure_password(self, java: str, conf_dir: Path) -> None:
        """Generate the initial password before the first start and store it with mode 0600."""
        pw_file = self.config.password_file.resolve()
        auth_file = self.home / "data" / "dbms" / "auth.ini"
        if pw_file.exists() and auth_file.exists():
            return
        if auth_file.exists() and not pw_file.exists():
            raise Neo4jSetupError(f"{auth_file} exists but the password file {pw_file} is missing: "
                                  f"remove {self.home / 'data'} to reset the managed database")
        password = secrets.token_urlsafe(18)
        # stored first (a failed neo4j-admin run leaves no auth.ini, so the next start makes a new one)
        _write_private(pw_file, password + "\n")
        env = {**os.environ, "NEO4J_HOME": str(self.home), "NEO4J_CONF": str(conf_dir)}
        # The password reaches neo4j-admin in a 0600 argument file (picocli's @file), never on its
        # command line, where any local user could read it. "--" ends the options: token_urlsafe
        # starts with "-" one time in 64, and neo4j-admin would read that as an unknown option.
        with tempfile.TemporaryDirectory(dir=self.home) as tmp:  # mode 0700
            argfile = Path(tmp) / "set-initial-password.args"
            _write_private(argfile, f"-- {password}\n")
            proc = subprocess.run([java, "-cp", str(self.lib_dir / "*"), ADMIN_TOOL, "dbms",
                                   "set-initial-password", f"@{argfile}"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise Neo4jSetupError(f"neo4j-admin set-initial-password failed: {proc.stderr.strip()[-500:]}")

    def pid(self) -> int | None:
        """PID of the server this home started, if it is alive: the one its pid file names, else one
        found running with this home (a start killed before it wrote the pid file, a file deleted)."""
        pid = self._pid_from_file()
        return pid if pid is not None else self._running_without_pid_file()

    def _running_without_pid_file(self) -> int | None:
        """A live Neo4j process of this home (its command line names it), looked for in /proc."""
        mine = f"--home-dir={self.home}"
        for entry in Path("/proc").iterdir() if Path("/proc/self").exists() else ():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:  # gone meanwhile, or another user's
                continue
            if ENTRY_POINT in args and mine in args:
                return int(entry.name)
        return None

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if pid <= 1 or pid == os.getpid():  # a corrupt file: -1 and 0 would signal every process / our group
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # another user's process (a recycled pid): this user started ours
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:  # a recycled pid, or another home's server, is not ours
            args = cmdline.read_text(errors="replace").split("\0")
        except OSError:  # gone meanwhile; or no /proc (macOS), where only the pid can tell
            return None if Path("/proc/self").exists() else pid
        if ENTRY_POINT not in args or f"--home-dir={self.home}" not in args:
            return None
        return pid

    def status(self) -> ServerStatus:
        pid = self.pid()
        running = pid is not None and _port_open(self.config.bolt_port)
        unanswering = None
        if pid is not None and not running:
            bolt, _ = self._running_ports()
            unanswering = (f"started with an earlier config: Bolt on port {bolt}, not {self.config.bolt_port} "
                           f"(`kgrec neo4j stop`, then start it again)" if bolt not in (None, self.config.bolt_port)
                           else f"not answering on Bolt port {self.config.bolt_port} (still starting?)")
        return ServerStatus(running, pid, self.config.bolt_uri, self.browser_url, self.config.password_file.resolve(),
                            self.home, unanswering)

    def start(self) -> tuple[ServerStatus, bool]:
        """Install if needed, start in the background and wait for Bolt.

        Returns:
            The status and whether this call started the server (False: it was already running).
        """
        for d in ("run", "data"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        self._private_data()
        if self._exclusive:  # this process holds the start lock already (exclusive())
            return self._start_locked()
        with self.exclusive():
            return self._start_locked()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this home's start lock: no other ``kgrec neo4j start`` (a cron job's, say) starts the
        server meanwhile; the bulk import holds it from the stop, through the import, to the start.
        A second holder waits for it, then finds the server it started.

        Raises:
            Neo4jSetupError: another process held it longer than a start may take.
        """
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        with open(self.home / "run" / "start.lock", "a") as lock:
            deadline = time.monotonic() + LOCK_WAIT_S + self.config.start_timeout_s
            for attempt in itertools.count():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 0:  # a stop or start may wait long here: say why
                        logger.warning("another `kgrec neo4j start`/`stop` or a bulk import holds %s: waiting for it "
                                       "(up to %.0f s)", self.home / "run" / "start.lock",
                                       LOCK_WAIT_S + self.config.start_timeout_s)
                    if time.monotonic() > deadline:
                        raise Neo4jSetupError(f"another `kgrec neo4j start` (or bulk import) on {self.home} has "
                                              f"held its lock for {LOCK_WAIT_S + self.config.start_timeout_s:.0f} s") from None
                    time.sleep(0.5)
            self._exclusive = True
            self.lock_fd = lock.fileno()
            try:
                yield
            finally:
                self._exclusive = False
                self.lock_fd = None

    def _start_locked(self) -> tuple[ServerStatus, bool]:
        if self.pid() is not None:
            bolt, http = self._running_ports()
            for kind, running, wanted in (("Bolt", bolt, self.config.bolt_port), ("HTTP", http, self.config.http_port)):
                if running is not None and running != wanted:  # it would never open the new one
                    raise Neo4jSetupError(f"this home's Neo4j runs with an earlier config ({kind} on port {running}, "
                                          f"not {wanted}): `kgrec neo4j stop`, then start it again")
            self._wait_for_ports()
            return self.status(), False
        for port, setting in ((self.config.bolt_port, "BOLT_PORT"), (self.config.http_port, "HTTP_PORT")):
            if _port_open(port):
                raise Neo4jSetupError(f"port {port} is taken by another process: stop it, "
                                      f"set KGREC_NEO4J__{setting}, or point NEO4J_URI at that server")
        self.install()
        try:  # a bulk import killed mid-swap: its database goes back (or forward) before the server opens it
            store_swap.recover(self.home)
        except OSError as e:
            raise Neo4jSetupError(f"cannot finish the database swap of an interrupted bulk import ({e}); "
                                  f"{self.home / 'data' / store_swap.JOURNAL} says which way it goes: fix the "
                                  f"cause and start again") from e
        java = _java()
        conf_dir = self._write_conf()
        self._ensure_password(java, conf_dir)
        cmd = [java, *self.jvm_options(), "-cp", str(self.lib_dir / "*"), ENTRY_POINT,
               f"--home-dir={self.home}", f"--config-dir={conf_dir}"]
        logged = self._log_sizes()
        with (self.home / "logs" / "console.log").open("ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.home, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_for_ports(proc, logged=logged)
        except Neo4jSetupError as failed:
            try:
                self.stop()
            except Neo4jSetupError as e:  # the start's own error (and its logs) first
                raise Neo4jSetupError(f"{failed}\nStopping it failed too: {e}") from failed
            raise
        return self.status(), True

    def _running_ports(self) -> tuple[int | None, int | None]:
        """The Bolt and HTTP ports in the config the running server was started with (the conf is
        written only by a start), each None when it cannot be read."""
        try:
            conf = (self.home / "conf" / "neo4j.conf").read_text()
        except OSError:
            return None, None
        found = [re.search(rf"^server\.{kind}\.listen_address=.*:(\d+)\s*$", conf, re.MULTILINE)
                 for kind in ("bolt", "http")]
        return tuple(int(f.group(1)) if f else None for f in found)  # type: ignore[return-value]

    def _wait_for_ports(self, proc: subprocess.Popen | None = None, logged: dict[str, int] | None = None) -> None:
        """Wait until Bolt and then HTTP, the Browser, which Neo4j opens last, accept connections,
        while the server process lives; ``logged``: the logs' sizes before this start, whose lines
        since then a failure shows."""
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            died = proc.poll() is not None if proc is not None else self.pid() is None
            if died:  # no point waiting for its ports
                break
            if _port_open(self.config.bolt_port) and _port_open(self.config.http_port):
                return
            time.sleep(0.5)
        raise Neo4jSetupError(f"Neo4j did not open Bolt on port {self.config.bolt_port} and HTTP on "
                              f"{self.config.http_port}; {self._log_tail(logged or {})}")

    def _log_sizes(self) -> dict[str, int]:
        """The sizes of :data:`LOGS` now (0 for one not there)."""
        sizes = {}
        for name in LOGS:
            try:
                sizes[name] = (self.home / "logs" / name).stat().st_size
            except OSError:
                sizes[name] = 0
        return sizes

    def _log_tail(self, since: dict[str, int]) -> str:
        """The last lines each of :data:`LOGS` gained past its size in ``since``: Neo4j's own errors
        (a port in use) go to neo4j.log, the JVM's (too small a heap) to console.log, and both keep
        earlier runs' lines."""
        parts = []
        for name in LOGS:
            path = self.home / "logs" / name
            try:
                with path.open("rb") as f:
                    start = since.get(name, 0)
                    f.seek(start if start <= os.fstat(f.fileno()).st_size else 0)  # rotated meanwhile: all of it
                    lines = f.read().decode(errors="replace").splitlines()[-20:]
            except OSError:
                continue
            if lines:
                parts.append(f"{path}:\n" + "\n".join(lines))
        return "\n".join(["its logs say:", *parts]) if parts else "its logs (logs/console.log, logs/neo4j.log) say nothing"

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the server this home started (and only that one), holding the start lock as
        :meth:`start` does (a pid file read before a concurrent start wrote it, then deleted, would
        hide that server from every command). Returns whether one was running.

        Raises:
            Neo4jSetupError: the process outlived SIGKILL (its pid file stays).
        """
        if self._exclusive:  # this process holds the start lock already (exclusive(), a failed start)
            return self._stop_locked(timeout_s)
        with self.exclusive():
            return self._stop_locked(timeout_s)

    def _stop_locked(self, timeout_s: float) -> bool:
        if self.pid() is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if not self._signal_until_gone(signal.SIGTERM, timeout_s):
            if not self._signal_until_gone(signal.SIGKILL, 10):  # gone before anyone opens its store again
                raise Neo4jSetupError(f"this home's Neo4j (pid {self.pid()}) outlived SIGTERM and SIGKILL (stuck in "
                                      f"the kernel, in disk I/O?): its store stays in use until it is gone")
        self.pid_file.unlink(missing_ok=True)
        return True

    def _signal_until_gone(self, sig: int, wait_s: float) -> bool:
        """Send ``sig`` to this home's server until none is left (the one :meth:`pid` finds now:
        after a ``java`` wrapper that does not exec, the JVM it left running) or ``wait_s`` passed.
        Returns whether none is left."""
        signalled: set[int] = set()
        deadline = time.monotonic() + wait_s
        while (pid := self.pid()) is not None:
            if time.monotonic() >= deadline:
                return False
            if pid not in signalled:
                signalled.add(pid)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:  # it exited on its own meanwhile
                    pass
            time.sleep(0.1)
        return True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte: a new file (never an
    existing one, nor a symlink) renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_password(config: Neo4jConfig) -> str:
    """The password to use: for another server (``NEO4J_URI``) the configured one, which must be
    set (the managed server's is never sent elsewhere); for kgrec's own server the one generated at
    its first start, whatever ``NEO4J_PASSWORD`` says (one left over from other work is ignored,
    with a warning)."""
    if not config.managed:
        if not config.password:
            raise Neo4jSetupError(f"NEO4J_URI points kgrec at {config.bolt_uri}: set NEO4J_PASSWORD for it "
                                  f"(the managed server's password is not sent elsewhere)")
        return config.password
    try:
        generated = config.password_file.read_text().strip()
    except FileNotFoundError:
        raise Neo4jSetupError(f"no Neo4j password: run `kgrec neo4j start` (it writes "
                              f"{config.password_file})") from None
    if config.password and config.password != generated:
        logger.warning("the configured password (NEO4J_PASSWORD, [neo4j] password) is ignored for kgrec's own Neo4j, "
                       "which uses the one generated in %s (set NEO4J_URI as well to use it for another server)",
                       config.password_file)
    return generated


def credentials(config: Neo4jConfig) -> tuple[str, str]:
    """``(user, password)`` to connect with: the configured ones for another server; for kgrec's own,
    its admin ``neo4j`` and the generated password (a leftover ``NEO4J_USER`` is ignored, with a
    warning, as ``NEO4J_PASSWORD`` is)."""
    user = config.user
    if config.managed and user != "neo4j":
        logger.warning("the configured user %r is ignored for kgrec's own Neo4j, whose user is neo4j", user)
        user = "neo4j"
    return user, read_password(config)
