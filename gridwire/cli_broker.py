"""``gridwire broker``: the broker contract (Mosquitto config, ACLs, passwords) and its private CA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gridwire.cli_common import LogLevel, _logging, run_until_signal  # noqa: F401

broker_app = typer.Typer(no_args_is_help=True, help="The broker contract: Mosquitto config, ACLs, passwords.")


@broker_app.command("config")
def broker_config(
    out: Annotated[Path, typer.Option(help="Directory to write mosquitto.conf, passwords and acl into.")],
    accounts: Annotated[Path, typer.Option(help="TOML file listing accounts: [[account]] username, password (or "
                                                "password_env, or none for a certificate-only concentrator), role "
                                                "(cloud|api|concentrator|app|device|fleet).")],
    port: Annotated[int, typer.Option(help="Plain MQTT listener port.")] = 1883,
    bind: Annotated[str, typer.Option(help="Listener address.")] = "127.0.0.1",
    tls_bind: Annotated[Optional[str], typer.Option(help="Address of the TLS listeners (default: --bind): the "
                                                         "network, with the plain listener on loopback.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Persistence directory.")] = Path("/var/lib/mosquitto"),
    run_as: Annotated[Optional[str], typer.Option(help="User mosquitto switches to when started as root.")] = None,
    tls_port: Annotated[Optional[int], typer.Option(help="Mutual-TLS listener port for concentrators "
                                                         "(needs --pki-dir).")] = None,
    tls_password_port: Annotated[Optional[int], typer.Option(
        help="TLS listener port where clients log in with a password: for cloud processes on other hosts "
             "(GRIDWIRE_MQTT_CA_FILE; needs --pki-dir).")] = None,
    pki_dir: Annotated[Optional[Path], typer.Option(help="Directory with ca.pem, server.pem and server.key "
                                                         "(gridwire broker pki ensure).")] = None,
    crl_file: Annotated[Optional[Path], typer.Option(help="The CRL the mutual-TLS listener enforces (the API "
                                                          "writes it: GRIDWIRE_CRL_FILE).")] = None,
    pid_file: Annotated[Optional[Path], typer.Option(help="Where Mosquitto writes its pid (the API signals it to "
                                                          "re-read the CRL: GRIDWIRE_BROKER_PID_FILE).")] = None,
    dynsec_plugin: Annotated[Optional[str], typer.Option(help="Path of mosquitto_dynamic_security.so (default: "
                                                              "where this machine has it).")] = None,
    dynsec_file: Annotated[Optional[Path], typer.Option(help="The plugin's accounts file, somewhere the broker's "
                                                             "user may write (default: next to mosquitto.conf).")]
    = None,
    owner: Annotated[Optional[int], typer.Option(help="Give the accounts file to this uid (the broker's user; 1883 "
                                                      "in the eclipse-mosquitto image).")] = None,
) -> None:
    """Write the Mosquitto configuration Gridwire runs with (persistence, queue limits) and its
    dynamic security file: the listed accounts and their roles, on top of the accounts made at
    run time (kept: writing it again at every start loses none)."""
    import tomllib

    from broker.mosquitto_conf import Account, BrokerConfig, write_broker_files

    import os

    listed = tomllib.loads(accounts.read_text()).get("account", [])
    resolved = []
    for entry in listed:
        password = entry.get("password")
        if password is None and "password_env" in entry:
            password = os.environ.get(entry["password_env"])
        certificate_only = entry.get("role") == "concentrator" and "password" not in entry \
            and "password_env" not in entry
        if not password and not certificate_only:
            typer.echo(f"error: {accounts}: account {entry.get('username')!r} has no password "
                       f"(set password, or the variable named by password_env)", err=True)
            raise typer.Exit(2)
        resolved.append(Account(username=entry["username"], password=password or None, role=entry["role"]))
    if (tls_port is None and tls_password_port is None) != (pki_dir is None):
        typer.echo("error: --pki-dir goes with --tls-port or --tls-password-port", err=True)
        raise typer.Exit(2)
    tls = {} if pki_dir is None else {"tls_port": tls_port, "tls_password_port": tls_password_port,
                                      "tls_ca_file": pki_dir / "ca.pem", "tls_cert_file": pki_dir / "server.pem",
                                      "tls_key_file": pki_dir / "server.key"}
    cfg = BrokerConfig(port=port, bind=bind, tls_bind=tls_bind, data_dir=data_dir, run_as=run_as, accounts=resolved,
                       **tls,
                       tls_crl_file=crl_file, pid_file=pid_file, dynsec_plugin=dynsec_plugin,
                       dynsec_file=dynsec_file, dynsec_owner=owner)
    conf = write_broker_files(cfg, out)
    typer.echo(f"wrote {conf} ({len(listed)} accounts)")


pki_app = typer.Typer(no_args_is_help=True, help="A private CA for mutual TLS: broker and concentrator certificates.")
broker_app.add_typer(pki_app, name="pki")
PkiDir = Annotated[Path, typer.Option("--dir", help="The CA's directory (ca.pem, ca.key; keys are written 0600).")]


def _pki_error(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


@pki_app.command("init-ca")
def broker_pki_init_ca(directory: PkiDir,
                       name: Annotated[str, typer.Option(help="The CA's common name.")] = "Gridwire CA",
                       days: Annotated[int, typer.Option(help="Validity in days.")] = 3650) -> None:
    """Create a new certificate authority (refuses to overwrite an existing one)."""
    from broker.pki import CertificateAuthority, PkiError

    try:
        ca = CertificateAuthority.create(directory, name=name, days=days)
    except PkiError as exc:
        _pki_error(exc)
    typer.echo(f"wrote {ca.cert_file} and its key")


@pki_app.command("ensure")
def broker_pki_ensure(directory: PkiDir,
                      name: Annotated[Optional[list[str]], typer.Option(
                          "--name", help="DNS name or IP address of the broker (repeat; default localhost, "
                                         "127.0.0.1).")] = None,
                      client: Annotated[Optional[list[str]], typer.Option(
                          "--client", help="A concentrator id to issue a client certificate for (repeat).")] = None,
                      reserved: Annotated[Optional[list[str]], typer.Option(
                          "--reserved", help="Privileged broker usernames no client certificate may carry "
                                             "(repeat; default gridwire-cloud).")] = None,
                      server_dir: Annotated[Optional[Path], typer.Option(
                          help="Where server.pem, server.key and a copy of ca.pem go (default: --dir).")] = None,
                      clients_dir: Annotated[Optional[Path], typer.Option(
                          help="Where <id>.pem, <id>.key and a copy of ca.pem go (default: <dir>/clients).")] = None,
                      crl_file: Annotated[Optional[Path], typer.Option(
                          help="Write an empty CRL signed by the CA here if there is none (the broker needs one "
                               "to start; the API keeps it up to date).")] = None,
                      owner: Annotated[Optional[int], typer.Option(
                          help="Give the broker's key and certificate to this uid (the broker reads them "
                               "after dropping root; 1883 in the eclipse-mosquitto image).")] = None) -> None:
    """Create the CA, the broker's certificate and the named client certificates if they are
    missing (clients under <dir>/clients); keeps whatever exists. Safe to run at every start."""
    from broker.crl import ensure_crl
    from broker.pki import DEFAULT_SERVER_NAMES, PkiError, ensure_pki
    from broker.topics import TopicError

    try:
        ca = ensure_pki(directory, server_names=name or DEFAULT_SERVER_NAMES, clients=client or [],
                        reserved=reserved or ["gridwire-cloud"], server_dir=server_dir, clients_dir=clients_dir)
        if crl_file is not None:
            ensure_crl(ca, crl_file)
    except (PkiError, TopicError) as exc:
        _pki_error(exc)
    if owner is not None:
        import os

        for path in ((server_dir or directory) / "server.key", (server_dir or directory) / "server.pem"):
            os.chown(path, owner, -1)
    typer.echo(f"PKI ready in {directory}")


@pki_app.command("server")
def broker_pki_server(directory: PkiDir,
                      name: Annotated[Optional[list[str]], typer.Option(
                          "--name", help="DNS name or IP address of the broker (repeat; default localhost, "
                                         "127.0.0.1).")] = None,
                      days: Annotated[int, typer.Option(help="Validity in days.")] = 825) -> None:
    """Issue the broker's server certificate (server.pem, server.key in the CA's directory)."""
    from broker.pki import DEFAULT_SERVER_NAMES, CertificateAuthority, PkiError

    try:
        files = CertificateAuthority.load(directory).issue_server(directory, names=name or DEFAULT_SERVER_NAMES,
                                                                  days=days)
    except PkiError as exc:
        _pki_error(exc)
    typer.echo(f"wrote {files.cert_file} and {files.key_file}")


@pki_app.command("client")
def broker_pki_client(concentrator_id: Annotated[str, typer.Argument(help="The concentrator id: the certificate's "
                                                                          "CN and so its broker username.")],
                      directory: PkiDir,
                      out: Annotated[Optional[Path], typer.Option(help="Where to write <id>.pem and <id>.key "
                                                                       "(default: <dir>/clients).")] = None,
                      days: Annotated[int, typer.Option(help="Validity in days.")] = 825) -> None:
    """Issue a concentrator's client certificate for the broker's mutual-TLS listener."""
    from broker.pki import CertificateAuthority, PkiError
    from broker.topics import TopicError

    try:
        files = CertificateAuthority.load(directory).issue_client(out or directory / "clients", concentrator_id,
                                                                  days=days)
    except (PkiError, TopicError) as exc:
        _pki_error(exc)
    typer.echo(f"wrote {files.cert_file} and {files.key_file}")
