"""Relabel sinks without a broker: the delivery ledger."""

from monitor.actions.sinks import KeyLedger


def test_key_ledger_survives_a_reload(tmp_path):
    path = tmp_path / "delivered" / "directory.keys"
    ledger = KeyLedger(path)
    ledger.add("cam-1/f1")
    ledger.add("cam-1/f2")
    ledger.add("cam-1/f1")  # once only
    assert "cam-1/f1" in ledger and "cam-1/f3" not in ledger
    assert path.read_text() == "cam-1/f1\ncam-1/f2\n"
    reloaded = KeyLedger(path)
    assert "cam-1/f1" in reloaded and "cam-1/f2" in reloaded and "cam-1/f3" not in reloaded


def test_key_ledger_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "directory.keys"
    path.write_text("cam-1/f1\ncam-1/f12\ncam-1/f1")  # a crash while appending cam-1/f13 tore it
    ledger = KeyLedger(path)
    assert "cam-1/f12" in ledger
    assert "cam-1/f1" in ledger  # from its own complete line
    ledger.add("cam-1/f13")
    assert "cam-1/f13" in KeyLedger(path)


def test_a_torn_key_is_not_a_delivery(tmp_path):
    path = tmp_path / "directory.keys"
    path.write_text("cam-1/f1\ncam-1/f2")  # cam-1/f2 was torn off cam-1/f21: f2 was never delivered
    ledger = KeyLedger(path)
    assert "cam-1/f1" in ledger and "cam-1/f2" not in ledger
    ledger.add("cam-1/f3")
    reloaded = KeyLedger(path)
    assert "cam-1/f3" in reloaded and "cam-1/f2" not in reloaded and "cam-1/f2cam-1/f3" not in reloaded
