"""A concentrator config's secrets sealed at rest: `gridwire secrets seal-config` seals them in
place (the file then holds none in clear), the concentrator opens them with its key file and
reads its meters; a missing or wrong key, a sealed value moved to another meter, or a clear
secret beside a sealing key is refused with the file and the secret named; no secret is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.sealing import new_key
from edge.config import ConfigError, load_config
from gridwire.cli import app
from tests.edge.concentrator.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD, dlms_entry, wait_for, write_config

CLEAR = (PASSWORD, BLOCK_KEY, AUTH_KEY, "conc-1-pw")




async def test_a_sealed_config_holds_no_secret_in_clear_and_the_concentrator_reads_with_it(
        tmp_path, mosquitto, clock, lls_sim, hls_sim, run_concentrator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=0,
                          meters=[dlms_entry("lls-1", lls_sim), dlms_entry("hls-1", hls_sim)])
    (tmp_path / "sealing.key").write_text(new_key("edge1") + "\n")
    config.write_text('secrets_key_file = "sealing.key"\n' + config.read_text())
    done = CliRunner().invoke(app, ["secrets", "seal-config", str(config)])
    assert done.exit_code == 0, done.output
    assert "4 secret(s) sealed with key edge1" in done.output
    text = config.read_text()
    assert all(clear not in text for clear in CLEAR) and text.count('"sealed:v1:edge1:') == 4
    assert "[[meters]]" in text and 'profile = "smr-5"' in text  # the rest of the file as it was
    again = CliRunner().invoke(app, ["secrets", "seal-config", str(config)])
    assert "0 secret(s) sealed" in again.output and config.read_text() == text

    loaded = load_config(config)
    assert loaded.broker.secret() == "conc-1-pw" and loaded.meters[0].password.get_secret_value() == PASSWORD
    run = await run_concentrator(config, clock=clock)
    await wait_for(lambda: run.concentrator.poller.health_of("lls-1").last_success, what="a read over LLS")
    await wait_for(lambda: run.concentrator.poller.health_of("hls-1").last_success, what="a read over HLS")
    await run.finish()
    assert not any(clear in caplog.text for clear in CLEAR)


def test_a_missing_or_wrong_key_or_a_moved_value_is_refused_by_name(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GRIDWIRE_SECRETS_KEY", raising=False)
    lls = ('[[meters]]\nprotocol = "dlms"\nmeter_id = "lls-1"\nhost = "127.0.0.1"\nsecurity = "lls"\n'
           f'password = "{PASSWORD}"\n')
    other = lls.replace("lls-1", "lls-2").replace(PASSWORD, "another-pw-9")
    config = write_config(tmp_path, mqtt_port=1883, meters=[lls, other])
    (tmp_path / "sealing.key").write_text(new_key("edge1") + "\n")
    config.write_text('secrets_key_file = "sealing.key"\n' + config.read_text())
    with pytest.raises(ConfigError, match="broker:password, meter:lls-1:password, meter:lls-2:password"):
        load_config(config)
    assert CliRunner().invoke(app, ["secrets", "seal-config", str(config)]).exit_code == 0
    sealed = config.read_text()

    (tmp_path / "sealing.key").write_text(new_key("edge1") + "\n")  # another key under the same id
    with pytest.raises(ConfigError, match="concentrator.toml: broker:password: sealed value does not open"):
        load_config(config)
    (tmp_path / "sealing.key").write_text("edge1:c2hvcnQ\n")
    with pytest.raises(ConfigError, match="key 'edge1' is 5 bytes; a sealing key is 32 bytes"):
        load_config(config)
    (tmp_path / "sealing.key").unlink()
    with pytest.raises(ConfigError, match="sealing.key: cannot read the sealing key"):
        load_config(config)
    config.write_text(sealed.replace('secrets_key_file = "sealing.key"\n', ""))
    with pytest.raises(ConfigError, match="broker:password is sealed, but there is no sealing key"):
        load_config(config)


def test_a_sealed_value_moved_to_another_meter_does_not_open(tmp_path, monkeypatch) -> None:
    key = new_key("edge1")
    monkeypatch.setenv("GRIDWIRE_SECRETS_KEY", key)
    lls = ('[[meters]]\nprotocol = "dlms"\nmeter_id = "lls-1"\nhost = "127.0.0.1"\nsecurity = "lls"\n'
           f'password = "{PASSWORD}"\n')
    config = write_config(tmp_path, mqtt_port=1883, meters=[lls, lls.replace("lls-1", "lls-2")])
    assert CliRunner().invoke(app, ["secrets", "seal-config", str(config)]).exit_code == 0
    assert load_config(config).meters[1].password.get_secret_value() == PASSWORD
    lines = config.read_text().splitlines()
    passwords = [i for i, line in enumerate(lines) if line.startswith("password = ")]
    lines[passwords[-2]], lines[passwords[-1]] = lines[passwords[-1]], lines[passwords[-2]]
    config.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="meter:lls-1:password: sealed value does not open"):
        load_config(config)


def test_clear_secrets_without_a_key_are_read_and_named_in_a_warning(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.delenv("GRIDWIRE_SECRETS_KEY", raising=False)
    config = write_config(tmp_path, mqtt_port=1883, meters=[])
    assert load_config(config).broker.secret() == "conc-1-pw"
    assert "secrets in clear (broker:password)" in caplog.text and "conc-1-pw" not in caplog.text
