"""The local stack without Docker: PostgreSQL 15, Kafka 4 (KRaft) and the edge (nginx) as plain
processes on this machine, for `make infra` / `make infra-down` / `make infra-status`
(`python -m devstack up|down|status`), the tests and the benchmarks.

Data, downloads and logs live in ORDER_SERVICE_HOME (~/.cache/order-service), shared by every clone
on the machine: the services outlive `make` and CI's shell (each runs in a session of its own), a
later run or another clone reuses what runs (a second `up` takes seconds), and runs on one home take
turns through a lock file in it. A server that answers at a configured address but was not started
here is used as it is and never stopped. Every directory made is private (config.private_dir: 0700,
0750 where a server's user must pass; refused when it is a symlink or someone else's).

Modules: `stack` (the registry of services and the commands), `process` (starting detached,
pid files checked against what the process runs, zombies, stopping, the lock), `install` (apt-get,
Java, Maven), `settings` (config.py's settings and the paths), `output` (messages), one module per
service, and `edge_config` (the nginx.conf renderer, also run by docker-compose).

Adding a service is one module and one line in `stack.SERVICES`. The module defines a class built
with the `settings.Settings` of the run, with:

    name: str                 its name in `make infra-status`
    prepare() -> None         install what is missing, make or check its directories
                              (config.private_dir); starts nothing. Every service is prepared
                              before any is launched, so a refused directory stops the run early.
    launch() -> None          quick: note what runs (ours, by its pid file; someone else's, by its
                              port), or start ours detached (process.start_detached) without
                              waiting for it. Every service is launched before any is readied.
    ready() -> None           wait until it serves (process.wait_for, with a deadline), set it up
                              (users, topics, settings; idempotent), and say so:
                              "<Name>: up at …", "already running at …", or "using the … already at …"
    down() -> None            stop ours (process.stop, which says so when ours is not running);
                              never one we did not start
    status() -> status.Status one line: up / starting / down, address, whose, where its files are

Anything wrong raises `output.Failure` with a message that says what to do next; a URL is printed
through `settings.masked` (no password), and no secret goes on a command line. Its files go in
`settings.home / "<name>"`, made with `config.private_dir`.

Internal, for the tests: DEVSTACK_DOWNLOADS names a home whose Maven repository and Kafka jars are
used (so that a fresh test home fetches nothing), DEVSTACK_POSTGRES_CONF another PostgreSQL settings
file than infra/postgres/postgresql.conf.
"""
