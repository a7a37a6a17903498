"""Data-parallel training on Ray Train across two nodes of a local Ray cluster: identical weights on
every rank, validation over the whole set, and a worker killed mid-run that training survives."""

import os
import signal
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.config import load_config
from coded_resnext.orchestration.lineage import Lineage

pytestmark = [pytest.mark.ray, pytest.mark.slow]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head and a worker node, one CPU each, so a two-worker trainer spans both."""
    from coded_resnext.orchestration.ray_runtime import WORKER_ENV, quiet_ray_env

    quiet_ray_env()
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": dict(WORKER_ENV)}, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _cfg(tmp_path, *extra):
    return load_config(
        None,
        [
            "data.name=synthetic",
            "data.ood=null",
            "data.limit_train=768",
            "data.limit_val=256",
            "train.epochs=3",
            "train.num_workers=2",
            "train.progress=none",
            "optim.batch_size=64",
            "optim.warmup_epochs=0",
            "eval.binary_classes=2",
            "eval.binary_fit_samples=128",
            "eval.removal_samples=64",
            "eval.invariance_samples=0",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.experiment=ddp",
            "tracking.log_model=false",
            *extra,
        ],
    )


def _only_run(uri):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    return client, run


def test_two_workers_on_two_nodes_keep_identical_weights_and_log_once(two_node_cluster, tmp_path):
    import ray

    from coded_resnext.orchestration.ray_train import make_trainer

    cfg = _cfg(tmp_path)
    result = make_trainer(cfg, Lineage(), storage_path=str(tmp_path / "storage"), name="two-nodes").fit()
    assert result.error is None
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    assert result.metrics["ddp/param_divergence"] == 0.0  # DDP kept every rank's weights identical
    client, run = _only_run(cfg.tracking.uri)
    assert run.info.status == "FINISHED" and run.data.params["train.num_workers"] == "2"
    for key in ("val/accuracy", "train/loss", "ddp/param_divergence"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1, 2], key
    assert "binary/param_fraction" in run.data.metrics
    for rank in (0, 1):  # every rank's system metrics, under its node id, in rank 0's run
        assert f"system/rank{rank}/cpu_utilization_percentage" in run.data.metrics, rank


def test_a_killed_worker_restarts_from_the_checkpoint_into_the_same_run(two_node_cluster, tmp_path):
    from ray._private import state  # the actor table with pids; ray.util.state would need the dashboard

    from coded_resnext.orchestration.ray_train import make_trainer

    cfg = _cfg(tmp_path, "train.epochs=4", "train.max_failures=2", "data.limit_train=1536")
    trainer = make_trainer(cfg, Lineage(), storage_path=str(tmp_path / "storage"), name="killed")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", trainer.fit()))
    thread.start()
    uri = cfg.tracking.uri
    killed = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed is None:
        time.sleep(0.5)
        try:
            client, run = _only_run(uri)
        except (AttributeError, ValueError):  # no experiment or run yet
            continue
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")]
        if 1 in steps:  # epoch 1 logged (and checkpointed after): kill a worker while epoch 2 trains
            workers = [
                a for a in state.actors().values() if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE"
            ]
            pid = max(a["Pid"] for a in workers)
            os.kill(pid, signal.SIGKILL)
            killed = pid
    thread.join(timeout=600)
    assert killed is not None, "training finished before a worker could be killed"
    result = outcome["result"]
    assert result.error is None
    client, run = _only_run(uri)
    assert run.info.status == "FINISHED"
    for key in ("val/accuracy", "train/loss"):  # every epoch once, none twice, after the restart
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1, 2, 3], key


def test_a_tune_trial_with_two_workers_reports_through_ray_train(two_node_cluster, tmp_path, monkeypatch):
    import yaml

    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = _cfg(tmp_path, "train.epochs=2", "tracking.experiment=ddp-sweep").to_dict()
    doc = {"config": base, "search": {"loss.mu": {"choice": [3.0]}}, "tune": {"num_samples": 1, "name": "ddp-sweep"}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(doc))
    outcome = Sweep(load_search_space(tmp_path / "space.yaml"), uri).run()
    assert outcome.failed == 0 and len(outcome.trials) == 1
    assert outcome.trials[0]["val/accuracy"] is not None and outcome.trials[0]["epochs_done"] == 2
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp-sweep").experiment_id])
    (trial,) = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert trial.info.status == "FINISHED" and trial.data.params["train.num_workers"] == "2"
    assert trial.data.metrics["ddp/param_divergence"] == 0.0
