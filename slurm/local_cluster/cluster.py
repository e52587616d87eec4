"""A throwaway one-node Slurm cluster on this machine, to try the Slurm path (sbatch, submitit) without a real one.

``python slurm/local_cluster/cluster.py {start,stop,status}``, as root, on Debian/Ubuntu (the ``start`` and ``stop``
scripts beside this file call it). Development infrastructure: standard library only, and not part of the
parcae_runner package, which never imports it.

``start()`` installs ``munge`` and ``slurm-wlm`` with apt-get when Slurm is missing, writes ``/etc/slurm/slurm.conf``
(first line :data:`MARKER`) for one node sized from ``slurmd -C``, starts munged, slurmctld and slurmd by hand (no
systemd needed) and waits until the node takes jobs. Every step is skipped when already done, so a second call only
checks. A ``slurm.conf`` without the marker belongs to someone else: it is never overwritten, and its cluster is used
if it answers ``sinfo``.

No slurmdbd: ``sacct`` does not work (job state comes from ``squeue`` / ``scontrol show job``), and submitit's
``job.state`` stays ``UNKNOWN`` (its ``result()`` still works, from the result file).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the first line of every slurm.conf this module writes; without it the file is someone else's. The text names the
# module's former home in the package: kept as it was, so that clusters configured before the move stay recognised
MARKER = (
    "# written by parcae_runner.launch.local_cluster -- a throwaway one-node cluster; remove this line to keep edits"
)
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
CTLD_SPOOL = Path("/var/spool/slurmctld")
SLURMD_SPOOL = Path("/var/spool/slurmd")
LOG_DIR = Path("/var/log/slurm")
MUNGE_RUN = Path("/run/munge")
# the pid files live in the spool dirs so that stop() only ever finds daemons of this module's config
CTLD_PID = CTLD_SPOOL / "slurmctld.pid"
SLURMD_PID = SLURMD_SPOOL / "slurmd.pid"
MUNGED_PID = MUNGE_RUN / "munged.pid"
# written by start() only when it started munged itself, so that stop() leaves a munged it found running alone
MUNGED_OURS = CTLD_SPOOL / "munged-started-by-local-cluster"
PARTITION = "debug"
# GPUs the node advertises through gres, backed by device files made for the purpose (no CUDA behind them): jobs
# can ask --gpus-per-node and get CUDA_VISIBLE_DEVICES / SLURM_STEP_GPUS, while training itself runs on the CPU
FAKE_GPUS = 2
FAKE_GPU_DIR = SLURMD_SPOOL / "fake-gpus"
PACKAGES = ("munge", "slurm-wlm")
# a requeued job waits cred_expire + 1 s before it may start again (default 120 s; Slurm refuses values below 5);
# 10 s is still ample for a credential that only travels between daemons on the same machine
CRED_EXPIRE_S = 10
SCHED_INTERVAL_S = 2
# the daemons live under /usr/sbin, which a non-login root shell may not have on PATH
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
DAEMON_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
READY_TIMEOUT_S = 60.0


class LocalClusterError(RuntimeError):
    """The local cluster cannot be started, stopped or used; the message says why and what to do."""


class SlurmInstallError(LocalClusterError):
    """Slurm is missing and apt-get could not install it (no apt-get, or no package repository reachable)."""


@dataclass(frozen=True)
class ClusterInfo:
    """What a job submitted to the local cluster can ask for: one node, its CPUs and memory, the partition."""

    node: str
    cpus: int
    memory_mb: int
    partition: str


@dataclass(frozen=True)
class ClusterStatus:
    """Which daemons run and the node's state as ``sinfo`` prints it (e.g. ``idle``, ``down*``; None: no answer)."""

    munged: bool
    slurmctld: bool
    slurmd: bool
    node_state: str | None

    @property
    def up(self) -> bool:
        return self.munged and self.slurmctld and self.slurmd and _usable(self.node_state)


def _log(message: str) -> None:
    print(f"[local_cluster] {message}", file=sys.stderr, flush=True)


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _run(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = _which(args[0]) or args[0]
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout, check=check)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LocalClusterError(
            "the local Slurm cluster must be started/stopped as root (it installs packages, writes /etc/slurm and "
            "runs the daemons); run it with sudo"
        )


def _live(pid: int, name: str) -> bool:
    """Whether process ``pid`` runs ``name``; a zombie does not count (PID 1 in a container may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return comm == name[:15] and state != "Z"


def _pid_alive(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process still runs ``name`` (a stale file or a reused pid gives None)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _live(pid, name) else None


def _running(name: str) -> bool:
    """Whether any process named ``name`` runs, whoever started it and wherever its pid file is."""
    return any(_live(int(p.name), name) for p in Path("/proc").iterdir() if p.name.isdigit())


def _install() -> None:
    if _which("slurmctld") and _which("slurmd") and _which("munged") and _which("sinfo"):
        return
    apt_install(PACKAGES)
    if not _which("slurmctld"):
        raise SlurmInstallError("apt-get installed slurm-wlm but slurmctld is still not found")


def apt_install(packages: tuple[str, ...]) -> None:
    """``apt-get update`` then install ``packages`` (no recommends); :class:`SlurmInstallError` when that fails."""
    apt = _which("apt-get")
    if apt is None:
        raise SlurmInstallError(f"{' '.join(packages)} missing and there is no apt-get to install it (Debian/Ubuntu)")
    _log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            raise SlurmInstallError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}")


def _ensure_munge_key() -> None:
    if MUNGE_KEY.exists():
        return
    _log(f"creating {MUNGE_KEY}")
    MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
    MUNGE_KEY.write_bytes(os.urandom(1024))
    # munged refuses a key that anyone but its own user can read
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)


def _hardware() -> dict[str, str]:
    """``slurmd -C``'s node line as a dict: NodeName, CPUs, Boards, SocketsPerBoard, CoresPerSocket, ..."""
    out = _run("slurmd", "-C").stdout
    line = next(line for line in out.splitlines() if line.startswith("NodeName="))
    return dict(field.split("=", 1) for field in line.split())


def common_conf_lines(mem_per_cpu_mb: int) -> list[str]:
    """The slurm.conf lines every cluster of this folder shares: auth, plugins, scheduling, no accounting."""
    return [
        "AuthType=auth/munge",
        f"AuthInfo=cred_expire={CRED_EXPIRE_S}",
        # linuxproc/none need no cgroups, which containers and gVisor often lack
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        # by default a submitted job may wait 3 s for the scheduler, and one whose BeginTime passes (a requeued one)
        # waits for the next full pass, up to 30 s (backfill) or 60 s (main loop); on one node passes cost nothing
        f"SchedulerParameters=batch_sched_delay=0,sched_interval={SCHED_INTERVAL_S},bf_interval={SCHED_INTERVAL_S}",
        "SelectType=select/cons_tres",
        "GresTypes=gpu",
        "SelectTypeParameters=CR_Core_Memory",
        # without a default, a job that asks no memory gets the whole node and array tasks would run one by one
        f"DefMemPerCPU={mem_per_cpu_mb}",
        # a node that was down comes back by itself as soon as slurmd registers with a valid config
        "ReturnToService=2",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        # Debian's default /usr/bin/mail is not installed
        "MailProg=/bin/true",
    ]


def render_conf(hardware: dict[str, str]) -> str:
    """The slurm.conf for one node described by ``slurmd -C`` (see :func:`_hardware`)."""
    node = hardware["NodeName"]
    reported_mb = int(hardware["RealMemory"])
    # keep some memory back for the daemons and the submitting shell; configuring less than slurmd reports is safe,
    # configuring more (or other CPU/socket/core counts) drains the node
    memory_mb = reported_mb - min(reported_mb // 2, max(512, reported_mb // 20))
    cpus = int(hardware["CPUs"])
    topology = " ".join(f"{k}={hardware[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"))
    lines = [
        MARKER,
        "ClusterName=local",
        # loopback everywhere: the node is this machine, and the hostname may not resolve in a container
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        *common_conf_lines(memory_mb // cpus),
        f"StateSaveLocation={CTLD_SPOOL}",
        f"SlurmdSpoolDir={SLURMD_SPOOL}",
        f"SlurmctldPidFile={CTLD_PID}",
        f"SlurmdPidFile={SLURMD_PID}",
        f"SlurmctldLogFile={LOG_DIR / 'slurmctld.log'}",
        f"SlurmdLogFile={LOG_DIR / 'slurmd.log'}",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} {topology} RealMemory={memory_mb} Gres=gpu:{FAKE_GPUS} "
        "State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def render_gres_conf() -> str:
    """gres.conf for the node's fake GPUs: one device file each under :data:`FAKE_GPU_DIR`, no autodetection."""
    return (
        "\n".join(
            [
                MARKER,
                "AutoDetect=off",
                *(f"Name=gpu File={FAKE_GPU_DIR / f'nvidia{i}'}" for i in range(FAKE_GPUS)),
            ]
        )
        + "\n"
    )


def _make_fake_gpus() -> None:
    """Character devices with NVIDIA's major number (195), made only for slurmd to find: nothing can open a GPU."""
    FAKE_GPU_DIR.mkdir(parents=True, exist_ok=True)
    for i in range(FAKE_GPUS):
        dev = FAKE_GPU_DIR / f"nvidia{i}"
        if not dev.exists():
            os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(195, i))


def _is_ours(conf: Path = SLURM_CONF) -> bool:
    try:
        with conf.open() as f:
            return f.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def _write_conf(hardware: dict[str, str]) -> bool:
    """Write slurm.conf and gres.conf unless they already hold exactly that text; True if a file changed."""
    changed = False
    for path, text in ((SLURM_CONF, render_conf(hardware)), (GRES_CONF, render_gres_conf())):
        if path.exists() and path.read_text() == text:
            continue
        _log(f"writing {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed = True
    return changed


def _make_dirs() -> None:
    for d in (CTLD_SPOOL, SLURMD_SPOOL, LOG_DIR):
        d.mkdir(parents=True, exist_ok=True)
    # /run is emptied at boot, and munged (running as munge) must own its socket, log and seed dirs
    for d in (MUNGE_RUN, Path("/var/log/munge"), Path("/var/lib/munge")):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")


def _start_daemon(name: str, *args: str, user: str | None = None) -> None:
    _log(f"starting {name}")
    exe = _which(name)
    if exe is None:
        raise LocalClusterError(f"{name} not found")
    # the daemons fork into the background and outlive us: stderr goes to a file, not a pipe that run() would read
    # until the daemon closes it; a fixed cwd and environment, not whatever the first caller (a pytest run) had
    with tempfile.TemporaryFile(mode="w+") as err:
        done = subprocess.run(
            [exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd="/",
            env=DAEMON_ENV,
            timeout=30,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
        if done.returncode != 0:
            err.seek(0)
            raise LocalClusterError(f"{name} failed to start ({done.returncode}): {err.read().strip()}; see {LOG_DIR}")


def _start_munged() -> None:
    if not _running("munged"):
        # --force: start despite a stale socket left by a munged that was killed
        _start_daemon("munged", "--force", user="munge")
        deadline = time.monotonic() + 10
        while _pid_alive(MUNGED_PID, "munged") is None:
            if time.monotonic() > deadline:
                raise LocalClusterError("munged did not start; see /var/log/munge/munged.log")
            time.sleep(0.1)
        MUNGED_OURS.touch()


def _start_daemons() -> None:
    _start_munged()
    if _pid_alive(CTLD_PID, "slurmctld") is None:
        _start_daemon("slurmctld")
    if _pid_alive(SLURMD_PID, "slurmd") is None:
        _start_daemon("slurmd")


def _stop_pid(pid_file: Path, name: str, timeout: float = 30.0) -> None:
    pid = _pid_alive(pid_file, name)
    if pid is None:
        return
    _log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _live(pid, name):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def _node_state(node: str | None = None) -> str | None:
    """The node's compact sinfo state (``idle``, ``mix``, ``down*``, ``drain``...); None if no cluster answers."""
    args = ["sinfo", "-h", "-N", "-o", "%t"] + (["-n", node] if node else [])
    try:
        done = _run(*args, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    states = done.stdout.split()
    return states[0] if done.returncode == 0 and states else None


def _usable(state: str | None) -> bool:
    # '*' means not responding; busy states are fine, a warm start may find jobs still running
    return state in ("idle", "mix", "alloc", "comp")


def _wait_ready(node: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    resumed = False
    while not _usable(state := _node_state(node)):
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"node {node} not ready after {READY_TIMEOUT_S:.0f} s (sinfo state: {state}); see {LOG_DIR}"
            )
        # a node drained or downed earlier (e.g. killed slurmd) stays so until resumed; ReturnToService only
        # covers nodes that were down because they stopped responding
        if state and not resumed and re.match(r"(down|drain|drng|fail)", state) and not state.endswith("*"):
            _log(f"node {node} is {state}: resuming it")
            _run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
            resumed = True
        time.sleep(0.5)


def _info_from_sinfo() -> ClusterInfo:
    """The running cluster's first node of its default partition."""
    rows = [line.split("|") for line in _run("sinfo", "-h", "-N", "-o", "%N|%c|%m|%P", timeout=10).stdout.split()]
    if not rows:
        raise LocalClusterError("sinfo answers but lists no node")
    node, cpus, memory, partition = next((r for r in rows if r[3].endswith("*")), rows[0])
    return ClusterInfo(node=node, cpus=int(cpus), memory_mb=int(memory.rstrip("+")), partition=partition.rstrip("*"))


def is_available(timeout: float = 5.0) -> bool:
    """True if a Slurm cluster (this module's or any other) answers ``sinfo`` within ``timeout`` seconds."""
    if _which("sinfo") is None:
        return False
    try:
        return _run("sinfo", "-h", timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start() -> ClusterInfo:
    """Install, configure and start the one-node cluster, or check that it runs; return what jobs can use.

    Needs root, except where a ``slurm.conf`` not written here exists and its cluster answers ``sinfo``: then that
    cluster's default partition and its first node are returned, and nothing is changed.

    Raises :class:`LocalClusterError` when not root, when a foreign ``slurm.conf`` exists and no cluster answers, or
    when the node does not come up; :class:`SlurmInstallError` when Slurm is missing and apt-get cannot install it.
    """
    if SLURM_CONF.exists() and not _is_ours():
        if is_available():
            _log(f"{SLURM_CONF} was not written by this module: using the cluster that answers sinfo")
            return _info_from_sinfo()
        raise LocalClusterError(
            f"{SLURM_CONF} exists, was not written by slurm/local_cluster, and no cluster answers "
            "sinfo: start that cluster, or move the file away to let this module write its own"
        )
    _require_root()
    _install()
    _ensure_munge_key()
    _make_dirs()
    _make_fake_gpus()
    hardware = _hardware()
    if _write_conf(hardware) and (_pid_alive(CTLD_PID, "slurmctld") or _pid_alive(SLURMD_PID, "slurmd")):
        # node sizes are only read at startup: restart rather than `scontrol reconfigure`
        _log("slurm.conf changed: restarting slurmctld and slurmd")
        _stop_pid(SLURMD_PID, "slurmd")
        _stop_pid(CTLD_PID, "slurmctld")
    _start_daemons()
    _wait_ready(hardware["NodeName"])
    info = _info_from_sinfo()
    _log(f"ready: node {info.node}, {info.cpus} CPUs, {info.memory_mb} MB, partition {info.partition}")
    return info


def stop() -> None:
    """Stop slurmd, slurmctld and munged if this module started them; a no-op when nothing runs."""
    _require_root()
    _stop_pid(SLURMD_PID, "slurmd")
    _stop_pid(CTLD_PID, "slurmctld")
    if MUNGED_OURS.exists():
        _stop_pid(MUNGED_PID, "munged")
        MUNGED_OURS.unlink()


def status() -> ClusterStatus:
    """Which daemons run and the node's state; prints one line per item to stderr."""
    result = ClusterStatus(
        munged=_running("munged"),
        slurmctld=_running("slurmctld"),
        slurmd=_running("slurmd"),
        node_state=_node_state() if _which("sinfo") else None,
    )
    for name in ("munged", "slurmctld", "slurmd"):
        _log(f"{name}: {'running' if getattr(result, name) else 'not running'}")
    _log(f"node: {result.node_state or 'no answer from sinfo'}")
    return result


def run_command_line(
    prog: str,
    doc: str | None,
    start_fn: Callable[[], object],
    stop_fn: Callable[[], None],
    is_up: Callable[[], bool],
    describe: Callable[[Any], str],
    argv: list[str] | None = None,
) -> int:
    """``start`` (prints ``describe(info)``), ``stop`` or ``status`` (exit 0 when up, 1 when not) of a local cluster."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("command", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(describe(start_fn()))
        elif args.command == "stop":
            stop_fn()
        else:
            return 0 if is_up() else 1
    except LocalClusterError as e:
        _log(f"error: {e}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command_line(
        "slurm/local_cluster/cluster.py",
        __doc__,
        start,
        stop,
        lambda: status().up,
        lambda i: f"node={i.node} cpus={i.cpus} memory_mb={i.memory_mb} partition={i.partition}",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
