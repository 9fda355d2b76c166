"""What this machine has: CUDA_VISIBLE_DEVICES as CUDA reads it (against a made-up list
of devices: no GPU needed), cgroup CPU quotas and the CPUs this process may use.

Where the CUDA Programming Guide says nothing (blanks, duplicates, "MIG-" before a GPU's
UUID), the expected selections are what CUDA (driver 580) showed torch on an H200."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analyzer_widgets import machine
from analyzer_widgets.machine import (
    Gpu,
    cgroup_cpu_dirs,
    cgroup_cpu_limit,
    parse_cfs_quota,
    parse_cpu_max,
    select_visible,
    usable_cpu_count,
)

# -- CUDA_VISIBLE_DEVICES ------------------------------------------------------------------------

G0 = Gpu(0, "GPU-5b7c0e1a-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3")
G1 = Gpu(1, "GPU-5b7d9f00-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3")
G2 = Gpu(2, "GPU-9d2f4c3b-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3")
GPUS = [G0, G1, G2]


def visible(setting: str | None, devices: list[Gpu] = GPUS, order: str | None = None) -> list[Gpu]:
    return list(select_visible(devices, setting, order).gpus)


def test_unset_shows_every_gpu_and_empty_shows_none() -> None:
    assert visible(None) == GPUS
    assert visible("") == []
    assert visible(" ") == []


def test_indices_are_kept_in_the_order_given_and_read_as_strtol_reads_them() -> None:
    assert visible("2,0") == [G2, G0]
    assert visible(" 1 , 2 ") == [G1, G2]
    assert visible("+1,-0,2abc") == [G1, G0, G2]


def test_an_invalid_entry_hides_itself_and_everything_after_it() -> None:
    # the CUDA Programming Guide's own example: 0,2,-1,1 shows 0 and 2
    assert visible("0,2,-1,1") == [G0, G2]
    assert visible("3,0") == []  # no GPU 3
    assert visible("0,bogus,1") == [G0]
    assert visible("0,,1") == [G0]


def test_a_uuid_prefix_names_the_one_gpu_it_starts() -> None:
    assert visible("GPU-9d") == [G2]
    assert visible(G1.uuid) == [G1]
    assert visible("GPU-5b7d,GPU-5b7c") == [G1, G0]
    assert visible("GPU-9d2f4c3b-") == [G2]


def test_a_uuid_is_matched_as_written() -> None:
    assert visible("GPU-9D2F") == []  # case counts
    assert visible("GPU-9d2f ") == []  # and blanks, unlike an index's
    assert visible("GPU-9d2f4c3b1111") == []  # and the dashes
    assert visible("GPU-") == []  # the prefix of every GPU names none


def test_a_prefix_of_several_gpus_is_invalid_as_in_cuda() -> None:
    assert visible("1,GPU-5b7,0") == [G1]
    assert visible("5b7c0e1a") == []  # no "GPU-": not a UUID as nvidia-smi -L prints it


def test_an_index_or_uuid_written_twice_hides_every_gpu() -> None:
    assert visible("1,0,0") == []
    assert visible("0,0x") == []  # "0x" is index 0 too
    assert visible("GPU-9d,1,GPU-9d") == []


def test_a_gpu_named_by_index_and_by_uuid_is_visible_once() -> None:
    assert visible("0,GPU-5b7c,1") == [G0, G1]


MIG_PARENT = Gpu(0, "GPU-aaaa0000-1111-2222-3333-444444444444", "NVIDIA A100-SXM4-80GB")
MIG_A = Gpu(0, "MIG-11110000-aaaa-bbbb-cccc-dddddddddddd", "NVIDIA A100-SXM4-80GB MIG 1g.10gb",
            mig_index=0, parent_uuid=MIG_PARENT.uuid, instance_ids=(7, 0))
MIG_B = Gpu(0, "MIG-22220000-aaaa-bbbb-cccc-dddddddddddd", "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
            mig_index=1, parent_uuid=MIG_PARENT.uuid, instance_ids=(2, 0))
OTHER = Gpu(1, "GPU-bbbb0000-1111-2222-3333-444444444444", "NVIDIA A100-SXM4-80GB")
WITH_MIG = [MIG_PARENT, MIG_A, MIG_B, OTHER]


def test_unset_shows_whole_gpus_not_their_mig_devices() -> None:
    assert visible(None, WITH_MIG) == [MIG_PARENT, OTHER]
    assert visible("1", WITH_MIG) == [OTHER]  # indices count whole GPUs


def test_a_mig_uuid_names_that_mig_device_not_its_gpu() -> None:
    assert visible(MIG_B.uuid, WITH_MIG) == [MIG_B]
    assert visible("MIG-1111", WITH_MIG) == [MIG_A]  # a prefix, as for GPU UUIDs
    assert visible("MIG-", WITH_MIG) == []  # the prefix of both


def test_mig_before_a_gpu_uuid_names_that_gpu_as_cuda_reads_it() -> None:
    # CUDA compares the digits with each device's UUID, whichever prefix is written
    assert visible("MIG-9d2f") == [G2]
    assert visible("MIG-" + G1.uuid.removeprefix("GPU-")) == [G1]


def test_the_older_mig_form_names_gpu_instance_and_compute_instance() -> None:
    assert visible(f"MIG-{MIG_PARENT.uuid}/2/0", WITH_MIG) == [MIG_B]
    assert visible("MIG-GPU-aaaa/7/0", WITH_MIG) == [MIG_A]
    assert visible(f"MIG-{MIG_PARENT.uuid}/9/0,1", WITH_MIG) == []  # no such instance: invalid


def test_cuda_enumerates_one_mig_device_only() -> None:
    assert visible(f"{MIG_A.uuid},{MIG_B.uuid},1", WITH_MIG) == [MIG_A, OTHER]


MIXED = [Gpu(0, "GPU-aaaa", "NVIDIA L4"), Gpu(1, "GPU-bbbb", "NVIDIA H100 80GB HBM3")]


def test_indices_over_gpus_of_different_models_warn_unless_pci_bus_order() -> None:
    selection = select_visible(MIXED, "1", None)
    assert [g.index for g in selection.gpus] == [1]  # read as NVML's PCI order all the same
    assert selection.warning is not None
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in selection.warning and "UUID" in selection.warning
    assert select_visible(MIXED, "1", "FASTEST_FIRST").warning is not None
    assert select_visible(MIXED, "1", "PCI_BUS_ID").warning is None
    assert select_visible(MIXED, "GPU-bbbb", None).warning is None  # UUIDs mean the same to both
    assert select_visible(MIXED, None, None).warning is None
    assert select_visible(GPUS, "1,0", None).warning is None  # one model: fastest first is PCI order


def test_the_sampler_selection_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeNvml:
        class NVMLError(Exception):
            pass

        NVML_DEVICE_MIG_ENABLE = 1

        def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - pynvml's names
            return 2

        def nvmlDeviceGetHandleByIndex(self, i: int) -> str:  # noqa: N802
            return f"h{i}"

        def nvmlDeviceGetUUID(self, handle: str) -> bytes:  # noqa: N802
            return MIXED[int(handle[1])].uuid.encode()

        def nvmlDeviceGetName(self, handle: str) -> str:  # noqa: N802
            return MIXED[int(handle[1])].name

        def nvmlDeviceGetMigMode(self, handle: str) -> list[int]:  # noqa: N802
            raise self.NVMLError("Not Supported")

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with pytest.warns(RuntimeWarning, match="PCI_BUS_ID"):
        found = machine.visible_handles(FakeNvml())
    assert found == [(MIXED[1], "h1")]


# -- CPUs ----------------------------------------------------------------------------------------


def test_cpu_max_quota_and_no_limit() -> None:
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("200000 100000\n") == 2.0
    assert parse_cpu_max("150000 100000") == 1.5
    assert parse_cpu_max("50000") == 0.5  # the kernel's default period
    assert parse_cpu_max("") is None
    assert parse_cpu_max("garbage 1") is None


def test_cfs_quota_and_no_limit() -> None:
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("250000\n", "100000\n") == 2.5
    assert parse_cfs_quota("x", "100000") is None
    assert parse_cfs_quota("100000", "0") is None


def test_cgroup_dirs_walk_up_from_the_process_cgroup_to_the_mount() -> None:
    mountinfo = (
        "24 30 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "25 30 0:23 / /proc rw - proc proc rw\n"
    )
    dirs = cgroup_cpu_dirs(mountinfo, "0::/system.slice/job.scope\n")
    assert dirs == [(2, Path("/sys/fs/cgroup/system.slice/job.scope")), (2, Path("/sys/fs/cgroup/system.slice")),
                    (2, Path("/sys/fs/cgroup"))]


def test_cgroup_v1_cpu_controller_and_a_container_that_mounts_only_its_own_cgroup() -> None:
    mountinfo = (
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    cgroups = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert cgroup_cpu_dirs(mountinfo, cgroups) == [(1, Path("/sys/fs/cgroup/cpu,cpuacct"))]
    # the host's path, not under what is mounted: the mount point is this cgroup
    assert cgroup_cpu_dirs(mountinfo, "3:cpu,cpuacct:/elsewhere\n") == [(1, Path("/sys/fs/cgroup/cpu,cpuacct"))]


def fake_proc(tmp_path: Path, cgroup_root: Path, cgroup: str, fstype: str = "cgroup2") -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    opts = "rw" if fstype == "cgroup2" else "rw,cpu,cpuacct"
    (proc / "mountinfo").write_text(f"24 30 0:22 / {cgroup_root} rw - {fstype} {fstype} {opts}\n")
    (proc / "cgroup").write_text(cgroup)
    return proc


def test_cgroup_cpu_limit_takes_the_smallest_quota_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "pod" / "box").mkdir(parents=True)
    (root / "pod" / "cpu.max").write_text("300000 100000\n")
    (root / "pod" / "box" / "cpu.max").write_text("max 100000\n")
    proc = fake_proc(tmp_path, root, "0::/pod/box\n")
    assert cgroup_cpu_limit(proc) == 3.0
    (root / "pod" / "box" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(proc) == 1.5


def test_cgroup_cpu_limit_v1_and_none(tmp_path: Path) -> None:
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu.cfs_period_us").write_text("100000\n")
    proc = fake_proc(tmp_path, root, "2:cpu,cpuacct:/\n", fstype="cgroup")
    assert cgroup_cpu_limit(proc) is None
    (root / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_cpu_limit(proc) == 0.5
    assert cgroup_cpu_limit(tmp_path / "no-such-proc") is None


def test_usable_cpus_are_the_affinity_further_limited_by_the_quota_rounded_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 2, 5, 7}, raising=False)
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: None)
    assert usable_cpu_count() == 4
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: 1.5)
    assert usable_cpu_count() == 2
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: 0.1)
    assert usable_cpu_count() == 1
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: 16.0)
    assert usable_cpu_count() == 4


def test_without_sched_getaffinity_the_cpu_count_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: None)
    assert usable_cpu_count() == 6


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="sched_getaffinity is Linux's")
def test_usable_cpus_here_are_at_most_this_process_affinity() -> None:
    assert 1 <= usable_cpu_count() <= len(os.sched_getaffinity(0))
