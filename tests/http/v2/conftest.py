"""The V2 tests' fixtures: a Triton client on the bundled models' server, the golden records, and a server on a
repository of its own for routing, datatypes and limits."""

import json
import shutil

import pytest
import tritonclient.http as triton

from tests.conftest import MODELS, copy_model, start_server, write_tiny_model
from tests.http.v2.helpers import write_string_label_model
from tests.routing import formula_models


@pytest.fixture(scope="module")
def tc(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def golden_records():
    return json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A server on a repository of its own, with a 64 KiB body limit: `words` (string labels), `double` (float64
    input), `m` (formula versions 1 and 2, the canary taking every unversioned request), `s` (formula version 1 with
    version 2 as a shadow of every request), `sticky` (two copies of churn, a canary sticky on the country field)."""
    models = tmp_path_factory.mktemp("v2")
    write_string_label_model(models / "words" / "1")
    write_tiny_model(models / "double" / "1", double=True)
    for name, routing in (("m", "canary = { version = 2, weight = 1.0 }"),
                          ("s", "shadows = [{ version = 2, sample = 1.0 }]")):
        (models / name).mkdir()
        (models / name / "fastserve.toml").write_text(
            f'[model]\nprimary = 1\n[versions]\npolicy = "all"\n[routing]\n{routing}\n')
        formula_models.write(models / name / "1")
        formula_models.write(models / name / "2", xor_column=1)
    sticky = copy_model("churn", models, name="sticky", config=(
        '[model]\nprimary = 1\n[versions]\npolicy = "all"\n'
        '[routing]\ncanary = { version = 2, weight = 0.5, sticky_key = "country" }\n'))
    shutil.copytree(sticky / "1", sticky / "2")
    srv = start_server(models, "--max-body-bytes", "65536")
    client = triton.InferenceServerClient(srv.url.removeprefix("http://"))
    yield srv, client, models
    client.close()
    log = srv.stop()
    assert "Traceback" not in log, log
