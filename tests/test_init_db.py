"""`genesis-flow init-db` creates indexes and the Default experiment, and is idempotent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pymongo import MongoClient

from tests.services import Services, unique_name
from tests.stack import REPO

pytestmark = pytest.mark.integration


def test_init_db_is_idempotent(services: Services) -> None:
    db_name = unique_name("initdb")
    env = {"GENESIS_FLOW_MONGODB_URI": services.mongodb_uri, "GENESIS_FLOW_MONGODB_DB": db_name, "PATH": "/usr/bin:/bin"}
    client = MongoClient(services.mongodb_uri)
    try:
        outputs = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "genesis_flow.cli", "init-db"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120, check=True)
            outputs.append(json.loads(done.stdout))
        assert outputs[0] == outputs[1]
        assert outputs[0]["sharded"] == []  # not a mongos
        db = client[db_name]
        assert db.experiments.count_documents({}) == 1
        assert db.experiments.find_one({"_id": "0"})["name"] == "Default"
        assert {"exp_stage_start", "params_wildcard"} <= set(db.runs.index_information())
        assert db.metrics.index_information()["run_key_seq"]["unique"] is True
        assert db.experiments.index_information()["name_unique"]["unique"] is True
    finally:
        client.drop_database(db_name)
