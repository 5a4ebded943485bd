"""A real SLURM cluster of one node on this machine, for the tests of `--backend slurm`: Debian's
`slurm-wlm` and `munge`, each daemon started here with its configuration, sockets, state and logs
in one scratch directory, on free ports, and stopped by pid (never by name: another cluster, or
another test run, may be up beside it).

Needs root (slurmd starts jobs as their user) and the daemons on the PATH; `unavailable()` says
why not otherwise. Without systemd the daemons are started directly; slurmctld exits 0 even when
it fails to come up, so the cluster is ready only once `sinfo` shows the node idle.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")
NODE_CPUS = 2
"""CPUs the node declares: a request for more is one no node can run."""


def unavailable() -> str | None:
    """Why a cluster cannot be brought up here, or None when it can."""
    missing = [name for name in DAEMONS if _which(name) is None]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} not found): "
            "apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "the SLURM daemons need root to start jobs"
    return None


def _which(name: str) -> str | None:
    # The daemons live in /usr/sbin, which is not on every PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class SlurmCluster:
    """One node, one partition (`debug`), in `directory`; `env` is what every client (sbatch,
    squeue, astra) needs to reach it."""

    directory: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    memory_mb: int = 0
    env: dict[str, str] = field(default_factory=dict)
    _pid_files: list[Path] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> None:
        d = self.directory
        # munged wants its socket's directory open to all, and its key readable by root only.
        os.chmod(d, 0o755)
        for sub, mode in (
            ("munge", 0o755),
            ("munge-key", 0o700),
            ("state", 0o700),
            ("spool", 0o755),
        ):
            (d / sub).mkdir(exist_ok=True)
            os.chmod(d / sub, mode)
        munge_socket = d / "munge" / "munge.socket"
        key = d / "munge-key" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True)
        self._daemon(
            [_which("munged"), f"--socket={munge_socket}", f"--key-file={key}",
             f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munge' / 'munged.log'}",
             f"--seed-file={d / 'munge' / 'munged.seed'}"],
            d / "munge" / "munged.pid",
        )  # fmt: skip
        self.memory_mb = max(1024, _free_mb() - 1024)
        conf = d / "slurm.conf"
        conf.write_text(
            _CONFIG.format(
                node=self.node, directory=d, munge_socket=munge_socket, cpus=NODE_CPUS,
                memory=self.memory_mb, ctld_port=_free_port(), slurmd_port=_free_port(),
            )
        )  # fmt: skip
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
        self.env = {"SLURM_CONF": str(conf), "PATH": path}
        environment = {**os.environ, **self.env}
        self._daemon([_which("slurmctld"), "-f", str(conf)], d / "slurmctld.pid", environment)
        self._daemon(
            [_which("slurmd"), "-f", str(conf), "-N", self.node], d / "slurmd.pid", environment
        )
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-o", "%t").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the SLURM node did not come up (state {state!r}): {self.logs()}")

    def _daemon(
        self, command: list[str | None], pid_file: Path, env: dict[str, str] | None = None
    ) -> None:
        """Start a daemon that forks into the background and writes its pid file."""
        self._pid_files.append(pid_file)
        subprocess.run([str(part) for part in command], check=True, env=env, timeout=30)
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} wrote no pid file: {self.logs()}")
            time.sleep(0.05)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A SLURM client command against this cluster."""
        return subprocess.run(
            [_which(command[0]) or command[0], *command[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=30,
        )

    def queue(self) -> list[str]:
        """The jobs in the queue, `ID STATE` each."""
        listed = self.run("squeue", "-h", "-o", "%i %T")
        if listed.returncode != 0:
            raise RuntimeError(f"squeue failed: {listed.stderr}")
        return listed.stdout.split("\n")[:-1]

    def wait_for_empty_queue(self, timeout: float = 20.0) -> list[str]:
        """The queue once empty, or what is still in it after `timeout` (a cancelled job stays
        listed as COMPLETING for a moment while slurmd ends its processes)."""
        deadline = time.monotonic() + timeout
        while (jobs := self.queue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return jobs

    def logs(self) -> str:
        found = []
        for log in sorted(self.directory.rglob("*.log")):
            found.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(found)

    def stop(self) -> None:
        """Stop every daemon this cluster started, by the pid in its pid file, newest first;
        jobs still in the queue are cancelled first so that none outlives the cluster."""
        if self.env:
            self.run("scancel", "--full", "--quiet", "-u", "root")
        pids = []
        for pid_file in reversed(self._pid_files):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if _alive(pid):  # else a stale pid file: that pid may be someone else's by now
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
        deadline = time.monotonic() + 10
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in filter(_alive, pids):  # a slurmd that lost its controller may not listen
            os.kill(pid, signal.SIGKILL)
        self._pid_files.clear()


def _free_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 4096


_CONFIG = """\
ClusterName=astra-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=2
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
