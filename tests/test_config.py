"""A model's `fastserve.toml` (`config.py`): every key read, and each wrong value refused with the file and the key
named."""

import dataclasses

import pytest

from fastserve.config import BatchingOptions, RuntimeOptions, for_server, load_model_config
from fastserve.exceptions import ConfigError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runtime]\ndevice = 'gpu'\n", "`device` must be one of auto, cpu, cuda, tensorrt; got 'gpu'"),
        ("[runtime]\nintra_op_threads = 'two'\n", "`intra_op_threads` must be int, got str 'two'"),
        ("[runtime]\nintra_op_threads = -1\n", "`intra_op_threads` must be >= 0, got -1"),
        ("[runtime]\nmemory_arena = 1\n", "`memory_arena` must be bool, got int 1"),
        ("[inputs]\nmax_rows = true\n", "`max_rows` must be int, got bool True"),
        ("[inputs]\nmax_rows = 0\n", "`max_rows` must be >= 1, got 0"),
        ("[inputs]\nmax_row = 10\n", "[inputs]: unknown key `max_row`"),
        ("[batch]\nmax_batch_size = 8\n", "unknown key `batch`"),
        ("[batching]\nmax_batch_size = 0\n", "`max_batch_size` must be >= 1, got 0"),
        ("[batching]\nlatency_slo_ms = 0\n", "`latency_slo_ms` must be > 0 (milliseconds), got 0"),
        ("[batching]\nlatency_slo_ms = '5'\n", "`latency_slo_ms` must be int or float, got str '5'"),
        ("[batching]\noversize = 'split'\n", "`oversize` must be one of alone, refuse; got 'split'"),
        ("[batching]\nmax_delay_us = -1\n", "`max_delay_us` must be >= 0, got -1"),
        ("[batching]\nmax_queue_rows = 100\n", "max_queue_rows (100) must be >= [inputs] max_rows (4096)"),
        ("[model]\nprimary = -2\n", "`primary` must be a version number >= 0"),
        ("[model\n", "not valid TOML"),
        ("[versions]\npolicy = 'newest'\n", "`policy` must be one of latest, specific, all; got 'newest'"),
        ("[versions]\npolicy = 'specific'\n", "`specific` must be a non-empty list of version numbers"),
        ("[versions]\nlatest = 0\n", "`latest` must be >= 1, got 0"),
        ("[gate]\natol = -1\n", "`atol` and `rtol` must be >= 0"),
        ("[gate]\nenabled = 'yes'\n", "`enabled` must be bool"),
        ("[inputs]\nunknown_fields = 'drop'\n", "`unknown_fields` must be one of ignore, error; got 'drop'"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    (tmp_path / "fastserve.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_model_config(tmp_path)
    assert message in str(info.value)
    assert str(tmp_path / "fastserve.toml") in str(info.value)


def test_full_config_is_read(tmp_path):
    (tmp_path / "fastserve.toml").write_text(
        "[model]\ndescription = 'd'\nprimary = 2\n"
        "[runtime]\ndevice = 'cpu'\nintra_op_threads = 4\ninter_op_threads = 2\nallow_spinning = true\n"
        "graph_optimization = 'basic'\nmemory_arena = false\n"
        "[inputs]\nallow_non_finite = true\nmax_rows = 16\n"
        "[batching]\nmax_batch_size = 32\nmax_delay_us = 500\nmax_queue_rows = 64\nlatency_slo_ms = 10\n"
        "instances = 2\noversize = 'refuse'\n")
    c = load_model_config(tmp_path)
    assert c.description == "d" and c.primary == 2
    assert c.runtime == RuntimeOptions("cpu", 4, 2, True, "basic", False, 200)
    assert c.inputs.allow_non_finite is True and c.inputs.max_rows == 16
    assert c.batching == BatchingOptions(32, 500, 64, 10.0, 2, "refuse")
    assert for_server(c, "cuda").runtime.device == "cuda"
    assert for_server(c, None) is c
    # Worker processes share the cores: intra-op threads capped, 0 ("one per core") taken as the cap.
    assert for_server(c, None, 2).runtime.intra_op_threads == 2 and for_server(c, None, 8) is c
    every_core = dataclasses.replace(c, runtime=dataclasses.replace(c.runtime, intra_op_threads=0))
    assert for_server(every_core, None, 3).runtime.intra_op_threads == 3
