"""Renamed public names keep working, with a warning that names the new one."""

import pytest

import fastserve.exceptions as exceptions


def test_the_server_side_overloaded_is_load_shed_and_its_old_name_still_imports():
    with pytest.warns(DeprecationWarning, match="now fastserve.exceptions.LoadShed"):
        old = exceptions.Overloaded
    assert old is exceptions.LoadShed
    assert issubclass(exceptions.QueueFull, exceptions.LoadShed)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = exceptions.Nothing
