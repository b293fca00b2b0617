"""Files written beside and renamed over: whole or not there."""

import pytest

from heteroagg._atomic import replaced_on_success, write_text_atomic


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    with replaced_on_success(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # until the block ends
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_leaves_the_old_file(tmp_path, stop):
    path = tmp_path / "report.json"
    write_text_atomic(path, "whole")
    with pytest.raises(stop), replaced_on_success(path) as tmp:
        tmp.write_text("half")
        raise stop
    assert path.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
