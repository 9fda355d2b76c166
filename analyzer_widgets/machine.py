"""What this machine has: its NVIDIA GPUs (through NVML) and the CPUs this process may use.

A leaf module: it imports only the standard library, and ``pynvml`` inside the functions
that need it, never at import, so every layer (config, server, monitor, the panel) may
ask it.

    >>> from analyzer_widgets import machine
    >>> machine.usable_cpu_count()  # doctest: +SKIP
    4
    >>> [gpu.name for gpu in machine.visible_gpus()]  # doctest: +SKIP
    ['NVIDIA H100 80GB HBM3']

Which GPUs are visible follows ``CUDA_VISIBLE_DEVICES`` as the CUDA Programming Guide
("CUDA Environment Variables") documents it, and as CUDA was seen to read it (driver 580,
compared with what torch saw there), so the GPUs sampled are the ones the server (which
inherits the variable) uses:

- unset: every GPU; set but empty (or blank): none;
- a comma-separated sequence, kept in its order, of integer indices (read as C's strtol
  reads them: " 1", "+1" and "1abc" are 1), UUIDs as ``nvidia-smi -L`` prints them or any
  prefix of one that names a single device (case and blanks count: "GPU-5b7c" names the
  GPU whose UUID starts so; "GPU-" alone names none), and MIG devices, by their UUID or in
  the older ``MIG-GPU-<uuid>/<GPU instance>/<compute instance>`` form. CUDA compares the
  digits after ``GPU-`` or ``MIG-`` with every device's, whichever of the two is written;
- the first entry that names no device (``-1``, a prefix of two UUIDs) hides itself and
  every entry after it; an index or a UUID written twice hides every device (a device
  named once by index and once by UUID is simply visible); CUDA enumerates a single MIG
  device, so later ones are left out.

Indices are read as NVML's, which are PCI bus order. CUDA's own order is
``CUDA_DEVICE_ORDER``: PCI bus order with ``PCI_BUS_ID``, and by default (``FASTEST_FIRST``)
fastest first, by a heuristic under which GPUs of one model keep their PCI order (so it is
in practice; the order among equals is not documented). So where GPUs of more than one
model are named by index without ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, the selection may not
be CUDA's: it is kept, and a warning says so and what to set instead. UUIDs mean the same
to both.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any


def nvml_unavailable_reason() -> str | None:
    """Why NVML cannot be used on this machine, or None if it can."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return f"NVML is not available ({e}); no NVIDIA driver on this machine"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML found no GPU"
    finally:
        pynvml.nvmlShutdown()
    return None


# -- GPUs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """One NVML device: a whole GPU, or a MIG device on one."""

    index: int  # NVML index (PCI bus order) of the GPU, or of the MIG device's GPU
    uuid: str  # "GPU-..." or, for a MIG device, "MIG-..."
    name: str
    mig_index: int | None = None  # a MIG device's index under its GPU (nvmlDeviceGetMigDeviceHandleByIndex)
    parent_uuid: str | None = None  # a MIG device's GPU
    instance_ids: tuple[int, int] | None = None  # a MIG device's (GPU instance, compute instance)

    @property
    def is_mig(self) -> bool:
        return self.mig_index is not None


@dataclass(frozen=True)
class Selection:
    """The devices CUDA_VISIBLE_DEVICES leaves visible, in CUDA's order, and a warning
    where that selection may not be CUDA's (see the module's docstring)."""

    gpus: tuple[Gpu, ...]
    warning: str | None = None


def select_visible(devices: Sequence[Gpu], setting: str | None, device_order: str | None = None) -> Selection:
    """The devices ``setting`` (CUDA_VISIBLE_DEVICES's value, None where unset) leaves
    visible, out of ``devices`` (every GPU and MIG device), as CUDA reads it.

    >>> gpus = [Gpu(0, "GPU-5b7c0e1a", "A"), Gpu(1, "GPU-9d2f4c3b", "A")]
    >>> [g.index for g in select_visible(gpus, "GPU-9d,0,-1,1").gpus]
    [1, 0]
    """
    whole = [d for d in devices if not d.is_mig]
    if setting is None:
        return Selection(tuple(whole))
    chosen: list[Gpu] = []
    indices: set[int] = set()
    uuids: set[str] = set()
    by_index = False
    for entry in setting.split(","):
        index = _INDEX.match(entry)
        if index:
            number = int(index.group(1))
            if number in indices:
                return Selection(())  # CUDA shows no device at all then
            indices.add(number)
            device = next((d for d in whole if d.index == number), None)
        else:
            if entry in uuids:
                return Selection(())
            uuids.add(entry)
            device = _by_uuid(entry, devices)
        if device is None:
            break  # CUDA hides an entry that names no device, and every entry after it
        by_index = by_index or index is not None
        if device in chosen or (device.is_mig and any(c.is_mig for c in chosen)):
            continue  # named by index and by UUID: visible once; CUDA enumerates one MIG device only
        chosen.append(device)
    warning = None
    if by_index and device_order != "PCI_BUS_ID" and len({g.name for g in whole}) > 1:
        warning = (
            f"CUDA_VISIBLE_DEVICES={setting} names GPUs by index, and CUDA_DEVICE_ORDER is "
            f"{device_order or 'unset (FASTEST_FIRST)'}: CUDA then numbers these GPUs of different models "
            "fastest first, while NVML (and this tool) number them in PCI bus order, so the GPUs sampled "
            "may not be the ones the server uses. Set CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPUs by "
            "UUID (nvidia-smi -L)."
        )
    return Selection(tuple(chosen), warning)


#: an index as C's strtol reads one: blanks, a sign, digits; what follows is ignored
_INDEX = re.compile(r"\s*([+-]?\d+)", re.ASCII)


def _by_uuid(entry: str, devices: Sequence[Gpu]) -> Gpu | None:
    """The one device a CUDA_VISIBLE_DEVICES entry that is no index names, or None."""
    legacy = re.fullmatch(r"MIG-(GPU-[^/]+)/(\d+)/(\d+)", entry)
    if legacy:
        parent = _only(d for d in devices if not d.is_mig and d.uuid.startswith(legacy.group(1)))
        ids = (int(legacy.group(2)), int(legacy.group(3)))
        return _only(d for d in devices if parent and d.parent_uuid == parent.uuid and d.instance_ids == ids)
    if entry.startswith(("GPU-", "MIG-")) and len(entry) > 4:
        return _only(d for d in devices if d.uuid[4:].startswith(entry[4:]))
    return None


def _only(candidates: Any) -> Gpu | None:
    """The single candidate; None for none or several (a UUID prefix must name one device)."""
    found = list(candidates)
    return found[0] if len(found) == 1 else None


def visible_handles(nvml: Any) -> list[tuple[Gpu, Any]]:
    """The visible devices with their NVML handles; ``nvml`` is the pynvml module, already
    initialised by the caller. Warns (RuntimeWarning) where the selection may not be CUDA's."""
    devices = _devices(nvml)
    selection = select_visible(
        [gpu for gpu, _ in devices], os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER")
    )
    if selection.warning:
        warnings.warn(selection.warning, RuntimeWarning, stacklevel=2)
    handles = {gpu.uuid: handle for gpu, handle in devices}
    return [(gpu, handles[gpu.uuid]) for gpu in selection.gpus]


def visible_gpus() -> list[Gpu]:
    """The GPUs (or MIG device) this process and the server it starts may use; none where
    NVML cannot be used (:func:`nvml_unavailable_reason` says why)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        return [gpu for gpu, _ in visible_handles(pynvml)]
    finally:
        pynvml.nvmlShutdown()


def _devices(nvml: Any) -> list[tuple[Gpu, Any]]:
    """Every GPU in NVML's order, each followed by its MIG devices."""
    found = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        gpu = Gpu(i, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)))
        found.append((gpu, handle))
        found.extend(_mig_devices(nvml, gpu, handle))
    return found


def _mig_devices(nvml: Any, gpu: Gpu, handle: Any) -> list[tuple[Gpu, Any]]:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except nvml.NVMLError:
        return []  # a board without MIG
    found = []
    for k in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
            uuid, name = _text(nvml.nvmlDeviceGetUUID(mig)), _text(nvml.nvmlDeviceGetName(mig))
        except nvml.NVMLError:
            continue  # an empty slot
        try:
            ids: tuple[int, int] | None = (nvml.nvmlDeviceGetGpuInstanceId(mig), nvml.nvmlDeviceGetComputeInstanceId(mig))
        except nvml.NVMLError:
            ids = None
        found.append((Gpu(gpu.index, uuid, name, mig_index=k, parent_uuid=gpu.uuid, instance_ids=ids), mig))
    return found


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- CPUs ----------------------------------------------------------------------------------------


def usable_cpu_count() -> int:
    """How many CPUs this process may keep busy: those its affinity allows, fewer where a
    cgroup CPU quota (a container's ``--cpus``, a Kubernetes limit) allows less; at least 1.

    >>> 1 <= usable_cpu_count() <= (os.cpu_count() or 1)
    True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_limit(proc: Path = Path("/proc/self")) -> float | None:
    """The CPUs the cgroup quotas on this process allow (1.5: one and a half), the smallest
    over its cgroup and the cgroups above it; None where none is set or none can be read."""
    try:
        mountinfo = (proc / "mountinfo").read_text()
        cgroups = (proc / "cgroup").read_text()
    except OSError:
        return None
    limits = []
    for version, directory in cgroup_cpu_dirs(mountinfo, cgroups):
        try:
            if version == 2:
                limit = parse_cpu_max((directory / "cpu.max").read_text())
            else:
                limit = parse_cfs_quota((directory / "cpu.cfs_quota_us").read_text(),
                                        (directory / "cpu.cfs_period_us").read_text())
        except OSError:
            continue  # the root cgroup has no cpu.max; a v2 cgroup without the cpu controller neither
        if limit is not None:
            limits.append(limit)
    return min(limits, default=None)


def cgroup_cpu_dirs(mountinfo: str, cgroups: str) -> list[tuple[int, Path]]:
    """(cgroup version, directory) of this process's CPU cgroup and of each one above it up
    to where it is mounted, from the text of /proc/self/mountinfo and /proc/self/cgroup."""
    v2_path = v1_path = None
    for line in cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        elif "cpu" in parts[1].split(","):
            v1_path = parts[2]
    found: list[tuple[int, Path]] = []
    for line in mountinfo.splitlines():
        mount, separator, fs = line.partition(" - ")
        fields, fs_fields = mount.split(), fs.split()
        if not separator or len(fields) < 5 or len(fs_fields) < 3:
            continue
        if fs_fields[0] == "cgroup2" and v2_path is not None:
            version, path = 2, v2_path
        elif fs_fields[0] == "cgroup" and "cpu" in fs_fields[2].split(",") and v1_path is not None:
            version, path = 1, v1_path
        else:
            continue
        found.extend((version, Path(d)) for d in _up_to_mount(_unescape(fields[3]), _unescape(fields[4]), path))
    return found


def _up_to_mount(root: str, mount_point: str, path: str) -> list[PurePosixPath]:
    """The directory of cgroup ``path`` under a mount of cgroup ``root``, and its parents up
    to the mount point. A path outside the mount's root (a container that mounts only its
    own cgroup, while /proc/self/cgroup names the host's path) is the mount point itself."""
    cgroup, mounted = PurePosixPath(path), PurePosixPath(root)
    relative = cgroup.relative_to(mounted) if cgroup.is_relative_to(mounted) else PurePosixPath()
    top = PurePosixPath(mount_point)
    here = top / relative
    dirs = [here]
    while here != top and here != here.parent:
        here = here.parent
        dirs.append(here)
    return dirs


def _unescape(field: str) -> str:
    """A mountinfo path, its octal escapes (``\\040`` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_cpu_max(text: str) -> float | None:
    """The CPUs a cgroup v2 ``cpu.max`` allows ("150000 100000": 1.5); None for no limit ("max 100000").

    >>> parse_cpu_max("max 100000") is None, parse_cpu_max("150000 100000")
    (True, 1.5)
    """
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000  # the kernel's default period
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """The CPUs cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` allow; None for no limit (quota -1).

    >>> parse_cfs_quota("-1", "100000") is None, parse_cfs_quota("50000", "100000")
    (True, 0.5)
    """
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None
