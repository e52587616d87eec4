"""A throwaway two-host Slurm cluster on this machine: multi-node jobs (srun across nodes, DDP over gloo) on one box.

``python slurm/local_cluster/two_hosts.py {start,stop,status}``, as root, on Debian/Ubuntu (``ip`` from iproute2,
installed with apt-get if missing; ``nsenter`` and ``unshare`` from util-linux). Each host is a network namespace
with its own address on a private bridge and its own host name (a UTS namespace), running its own slurmd; a
slurmctld of its own, on the bridge's address, rules both. The hosts reach each other over a direct link (a veth
pair between the two namespaces, each end holding its host's address): some kernels (gVisor's netstack, for one) do
not forward between a bridge's ports, which would let the controller reach every host but no host reach another.
Traffic never leaves this machine and goes through the hosts' own network stacks: a job's ranks find each other by
host name (``/etc/hosts`` lines written here), as on a cluster.

It lives beside the one-node cluster of ``cluster.py`` and leaves it alone: its own config file (clients select it
with ``SLURM_CONF``, see :data:`SLURM_CONF`), ports, spool directories, pid and log files; it shares munged.
Development infrastructure: standard library only, not part of the parcae_runner package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as one_node  # noqa: E402  (the module beside this file: installation, munge, daemon helpers)

MARKER = "# written by slurm/local_cluster/two_hosts.py -- a throwaway two-host cluster; remove this line to keep edits"
CONF_DIR = Path("/etc/slurm-two-hosts")
# what a client (sbatch, squeue, scontrol) of this cluster must have in its environment: SLURM_CONF=<this>
SLURM_CONF = CONF_DIR / "slurm.conf"
CTLD_SPOOL = Path("/var/spool/slurmctld-two-hosts")
SLURMD_SPOOL = Path("/var/spool/slurmd-two-hosts")
LOG_DIR = one_node.LOG_DIR
CTLD_PID = CTLD_SPOOL / "slurmctld.pid"
# ports apart from the one-node cluster's (6817/6818), so both can run at once
CTLD_PORT, SLURMD_PORT = 6917, 6918
BRIDGE = "prbr0"
CONTROLLER_ADDR = "10.77.0.1"
PREFIX_LEN = 24
HOSTS = {"pr-node1": "10.77.0.11", "pr-node2": "10.77.0.12"}
PARTITION = "hosts"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# parcae-runner two-host test cluster"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TwoHostInfo:
    """What a client needs: the config to point ``SLURM_CONF`` at, the partition and the hosts."""

    conf: str
    partition: str
    nodes: tuple[str, ...]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return one_node._run("ip", *args, check=check)


def _netns(host: str) -> str:
    return host  # the namespace is named after the host it holds


def _link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def _netns_exists(name: str) -> bool:
    return name in _ip("netns", "list", check=False).stdout.split()


def _make_network() -> None:
    """The bridge (this machine's side holds the controller address) and one namespace per host on it."""
    if not _link_exists(BRIDGE):
        one_node._log(f"creating bridge {BRIDGE} ({CONTROLLER_ADDR}/{PREFIX_LEN})")
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{CONTROLLER_ADDR}/{PREFIX_LEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for i, (host, addr) in enumerate(HOSTS.items(), start=1):
        ns, veth = _netns(host), f"prveth{i}"
        if not _netns_exists(ns):
            one_node._log(f"creating host {host}: network namespace {ns}, {addr} on {BRIDGE}")
            _ip("netns", "add", ns)
        if not _link_exists(veth):
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", BRIDGE)
            _ip("netns", "exec", ns, "ip", "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "eth0")
        _ip("link", "set", veth, "up")
        for dev in ("lo", "eth0"):
            _ip("netns", "exec", ns, "ip", "link", "set", dev, "up")
    _make_host_link()


def _in_host(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _ip("netns", "exec", _netns(host), "ip", *args, check=check)


def _make_host_link() -> None:
    """The hosts' direct link: each end holds its host's address (/32), and the route to the other host uses it."""
    (a, addr_a), (b, addr_b) = HOSTS.items()
    ends = {a: ("prlink1", addr_a, addr_b), b: ("prlink2", addr_b, addr_a)}
    if _in_host(a, "link", "show", "prlink1", check=False).returncode != 0:
        one_node._log(f"linking {a} and {b}")
        _ip("link", "add", "prlink1", "netns", _netns(a), "type", "veth", "peer", "name", "prlink2", "netns", _netns(b))
        for host, (dev, own, _) in ends.items():
            _in_host(host, "addr", "add", f"{own}/32", "dev", dev)
    for host, (dev, own, other) in ends.items():
        _in_host(host, "link", "set", dev, "up")
        _in_host(host, "route", "replace", f"{other}/32", "dev", dev, "src", own)


def _remove_network() -> None:
    for host in HOSTS:
        if _netns_exists(_netns(host)):
            _ip("netns", "del", _netns(host), check=False)  # takes its end of the veth pair, and so both ends
    if _link_exists(BRIDGE):
        _ip("link", "del", BRIDGE, check=False)


def hosts_lines() -> list[str]:
    return [f"{addr} {host} {HOSTS_MARK}" for host, addr in HOSTS.items()]


def _write_hosts_file(keep: bool) -> None:
    """Add (keep=True) or remove this cluster's lines in /etc/hosts; other lines are left as they are."""
    lines = [line for line in HOSTS_FILE.read_text().splitlines() if not line.endswith(HOSTS_MARK)]
    text = "\n".join(lines + (hosts_lines() if keep else [])) + "\n"
    if HOSTS_FILE.read_text() != text:
        HOSTS_FILE.write_text(text)


def render_conf(hardware: dict[str, str], memory_mb: int) -> str:
    """slurm.conf for the two hosts, each with this machine's CPUs (``slurmd -C``'s ``hardware``) and ``memory_mb``;
    the controller is named after this machine (slurmctld checks its own host name against it)."""
    nodes = ",".join(HOSTS)
    cpus = f"CPUs={hardware['CPUs']} " + " ".join(
        f"{k}={hardware[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    )
    lines = [
        MARKER,
        "ClusterName=twohosts",
        f"SlurmctldHost={hardware['NodeName']}({CONTROLLER_ADDR})",
        f"SlurmctldPort={CTLD_PORT}",
        f"SlurmdPort={SLURMD_PORT}",
        "SlurmUser=root",
        *one_node.common_conf_lines(memory_mb // int(hardware["CPUs"])),
        f"StateSaveLocation={CTLD_SPOOL}",
        # one spool directory, pid and log file per host: %n is the node name of the slurmd that reads it
        f"SlurmdSpoolDir={SLURMD_SPOOL}/%n",
        f"SlurmctldPidFile={CTLD_PID}",
        f"SlurmdPidFile={SLURMD_SPOOL}/%n/slurmd.pid",
        f"SlurmctldLogFile={LOG_DIR / 'two-hosts-slurmctld.log'}",
        f"SlurmdLogFile={LOG_DIR / 'two-hosts-slurmd-%n.log'}",
        *(
            f"NodeName={host} NodeAddr={addr} {cpus} RealMemory={memory_mb} State=UNKNOWN"
            for host, addr in HOSTS.items()
        ),
        f"PartitionName={PARTITION} Nodes={nodes} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def _slurmd_pid(host: str) -> int | None:
    return one_node._pid_alive(SLURMD_SPOOL / host / "slurmd.pid", "slurmd")


def _start_slurmd(host: str) -> None:
    """slurmd in the host's network namespace, under the host's own name (a UTS namespace of its own)."""
    one_node._log(f"starting slurmd on {host}")
    (SLURMD_SPOOL / host).mkdir(parents=True, exist_ok=True)
    script = f"hostname {host} && exec {one_node._which('slurmd')} -f {SLURM_CONF}"
    # nsenter, not `ip netns exec`: that one mounts a fresh /sys, without the cgroup tree slurmd's plugins read
    cmd = ["nsenter", f"--net=/run/netns/{_netns(host)}", "unshare", "--uts", "sh", "-c", script]
    done = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd="/",
        env=one_node.DAEMON_ENV,
        timeout=30,
        text=True,
    )
    if done.returncode != 0:
        raise one_node.LocalClusterError(f"slurmd on {host} failed to start: {done.stderr.strip()}; see {LOG_DIR}")


def _client_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF), "PATH": one_node.SEARCH_PATH}


def _node_states() -> dict[str, str]:
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, env=_client_env(), timeout=10
    )
    return dict(line.split() for line in done.stdout.splitlines() if line.strip()) if done.returncode == 0 else {}


def _wait_ready() -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    resumed: set[str] = set()
    while True:
        states = _node_states()
        if all(one_node._usable(states.get(host)) for host in HOSTS):
            return
        if time.monotonic() > deadline:
            raise one_node.LocalClusterError(f"hosts not ready after {READY_TIMEOUT_S:.0f} s: {states}; see {LOG_DIR}")
        for host, state in states.items():
            if host not in resumed and re.match(r"(down|drain|drng|fail)", state) and not state.endswith("*"):
                subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], env=_client_env())
                resumed.add(host)
        time.sleep(0.5)


def start() -> TwoHostInfo:
    """Install Slurm if needed, make the network and both hosts, start the daemons, wait until both nodes take jobs.
    Idempotent: a second call only checks."""
    one_node._require_root()
    one_node._install()
    if not one_node._which("ip"):
        one_node.apt_install(("iproute2",))  # not in minimal Debian images; util-linux (nsenter, unshare) is
    if not all(one_node._which(tool) for tool in ("ip", "nsenter", "unshare")):
        raise one_node.LocalClusterError("the two-host cluster needs `ip` (iproute2), `nsenter` and `unshare`")
    one_node._ensure_munge_key()
    one_node._make_dirs()
    for d in (CONF_DIR, CTLD_SPOOL, SLURMD_SPOOL):
        d.mkdir(parents=True, exist_ok=True)
    _make_network()
    _write_hosts_file(keep=True)
    hardware = one_node._hardware()
    # a quarter of the machine's memory per host: the hosts share it with the one-node cluster
    text = render_conf(hardware, int(hardware["RealMemory"]) // 4)
    changed = not SLURM_CONF.exists() or SLURM_CONF.read_text() != text
    if changed:
        one_node._log(f"writing {SLURM_CONF}")
        SLURM_CONF.write_text(text)
        _stop_daemons()
    one_node._start_munged()
    if one_node._pid_alive(CTLD_PID, "slurmctld") is None:
        one_node._start_daemon("slurmctld", "-f", str(SLURM_CONF))
    for host in HOSTS:
        if _slurmd_pid(host) is None:
            _start_slurmd(host)
    _wait_ready()
    one_node._log(f"ready: hosts {', '.join(HOSTS)} on {BRIDGE}; clients use SLURM_CONF={SLURM_CONF}")
    return TwoHostInfo(conf=str(SLURM_CONF), partition=PARTITION, nodes=tuple(HOSTS))


def _stop_daemons() -> None:
    for host in HOSTS:
        one_node._stop_pid(SLURMD_SPOOL / host / "slurmd.pid", "slurmd")
    one_node._stop_pid(CTLD_PID, "slurmctld")


def stop() -> None:
    """Stop both slurmds and the slurmctld, remove the namespaces, the bridge and the /etc/hosts lines."""
    one_node._require_root()
    _stop_daemons()
    _remove_network()
    _write_hosts_file(keep=False)


def status() -> bool:
    states = _node_states() if SLURM_CONF.exists() else {}
    one_node._log(f"slurmctld: {'running' if one_node._pid_alive(CTLD_PID, 'slurmctld') else 'not running'}")
    for host in HOSTS:
        one_node._log(f"{host}: slurmd {'running' if _slurmd_pid(host) else 'not running'}, {states.get(host)}")
    return all(one_node._usable(states.get(host)) for host in HOSTS)


def main(argv: list[str] | None = None) -> int:
    return one_node.run_command_line(
        "slurm/local_cluster/two_hosts.py",
        __doc__,
        start,
        stop,
        lambda: bool(status()),
        lambda i: f"SLURM_CONF={i.conf} partition={i.partition} nodes={','.join(i.nodes)}",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
