# The service's gunicorn settings without its hooks (no consumer, no cache warm-up), for bench.ceiling.
from pathlib import Path

exec(compile(Path(__file__).resolve().parent.parent.joinpath("gunicorn.conf.py").read_text(),
             "gunicorn.conf.py", "exec"))
del post_fork, post_worker_init, worker_exit  # noqa: F821
