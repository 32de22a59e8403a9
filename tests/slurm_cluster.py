"""A real single-node SLURM cluster (Debian's slurm-wlm and munge), started by a test as root.

Everything lives under one temporary directory: munge's key and socket, slurm.conf, state and
spool directories, logs. The node advertises fake GPUs (``gres/gpu`` backed by character devices
that behave like /dev/null), so launch scripts with ``#SBATCH --gpus-per-node`` schedule unchanged;
on this CPU node torch sees no GPU and megatron-vl falls back to the CPU emulation.

``.ci/run`` installs the packages; ``SlurmCluster.unavailable_reason()`` says why a machine cannot
run it (not root, packages missing) so tests skip locally with that reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from megatron_vl.runtime.distributed import free_local_port

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scontrol")
NUM_FAKE_GPUS = 8


class SlurmCluster:
    """Start with ``start()``, stop with ``stop()`` (or use as a context manager)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._munge_dir: Path | None = None
        self._ports = (free_local_port(), free_local_port())

    @staticmethod
    def unavailable_reason() -> str | None:
        if os.geteuid() != 0:
            return "the SLURM test cluster needs root (munged runs as the munge user, slurmd as root)"
        missing = [name for name in BINARIES if shutil.which(name) is None]
        if missing:
            return f"SLURM/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
        return None

    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        self._start_munge()
        self._write_config()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(self.conf)], env=self.env, check=True)
        self._wait_until_idle()

    def _start_munge(self) -> None:
        # munged runs as the munge user, which must reach its directory: pytest's tmp dirs are 0700.
        self._munge_dir = Path(tempfile.mkdtemp(prefix="megatron-vl-munge-"))
        shutil.chown(self._munge_dir, "munge", "munge")
        os.chmod(self._munge_dir, 0o711)
        as_munge = ["runuser", "-u", "munge", "--"]
        key = self._munge_dir / "munge.key"
        subprocess.run([*as_munge, "mungekey", "--create", "--force", "--keyfile", str(key)], check=True)
        subprocess.run(
            [
                *as_munge,
                "munged",
                f"--socket={self._munge_dir / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={self._munge_dir / 'munged.pid'}",
                f"--log-file={self._munge_dir / 'munged.log'}",
                f"--seed-file={self._munge_dir / 'munged.seed'}",
                "--force",
            ],
            check=True,
        )

    def _write_config(self) -> None:
        host = socket.gethostname().split(".")[0]
        for sub in ("state", "spool", "log", "dev"):
            (self.root / sub).mkdir(exist_ok=True)
        for index in range(NUM_FAKE_GPUS):
            device = self.root / "dev" / f"gpu{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        (self.root / "gres.conf").write_text(f"Name=gpu File={self.root}/dev/gpu[0-{NUM_FAKE_GPUS - 1}]\n")
        ctld_port, slurmd_port = self._ports
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=megatronvltest",
                    f"SlurmctldHost={host}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    # cred_expire is also how long a requeued job waits to restart (default 120 s).
                    f"AuthInfo=socket={self._munge_dir / 'munge.socket'},cred_expire=10",
                    f"SlurmctldPort={ctld_port}",
                    f"SlurmdPort={slurmd_port}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SchedulerType=sched/backfill",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "KillWait=30",
                    "GresTypes=gpu",
                    f"NodeName={host} CPUs={os.cpu_count()} RealMemory=4000 Gres=gpu:{NUM_FAKE_GPUS} State=UNKNOWN",
                    f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _wait_until_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("sinfo", "--noheader", "--format=%t").stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node never became idle (state {state!r}); logs in {self.root / 'log'}")

    def run(self, *command: str, check: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, ...) against this cluster."""
        env = dict(self.env, **(extra_env or {}))
        return subprocess.run(command, env=env, check=check, capture_output=True, text=True)

    def sbatch(self, *args: str, extra_env: dict | None = None, cwd: str | None = None) -> int:
        """Submit a batch job; return its id."""
        env = dict(self.env, **(extra_env or {}))
        out = subprocess.run(
            ["sbatch", "--parsable", *args], env=env, cwd=cwd, check=True, capture_output=True, text=True
        ).stdout
        return int(out.strip().split(";")[0])

    def job_state(self, job_id: int) -> str:
        out = self.run("scontrol", "show", "job", str(job_id), check=False).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def wait(self, job_id: int, timeout: float) -> str:
        """Wait until the job leaves the queue; return its final state (COMPLETED, FAILED, ...)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "SUSPENDED"):
                return state
            time.sleep(1)
        self.run("scancel", str(job_id), check=False)
        raise TimeoutError(f"SLURM job {job_id} did not finish in {timeout:.0f} s")

    def stop(self) -> None:
        self.run("scancel", "--user=root", check=False)
        self.run("scontrol", "shutdown", check=False)
        for pid_file in (self.root / "slurmctld.pid", self.root / "slurmd.pid"):
            _kill_pid_file(pid_file)
        if self._munge_dir is not None:
            _kill_pid_file(self._munge_dir / "munged.pid")
            shutil.rmtree(self._munge_dir, ignore_errors=True)


def _kill_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
