"""The API under pyinstrument, for `benchmarks/run.py --profile SCENARIO`.

gunicorn serves `profile_app:app` (with `--pythonpath benchmarks`, one worker): the
production app of wsgi.py, each request profiled in the thread that serves it (so
sync and gthread workers both work), the samples merged; the first PROFILE_SKIP
requests (which open the pool's connections) are not profiled. When the worker exits,
it writes PROFILE_OUT.html (pyinstrument's interactive tree), PROFILE_OUT.txt (the
call tree) and PROFILE_OUT-flat.txt (functions by own time).
"""

import atexit
import os
import threading
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

from wsgi import app as api

_lock = threading.Lock()
_sessions: list[Session] = []
_skip = [int(os.environ.get("PROFILE_SKIP", "0"))]


def app(environ, start_response):
    with _lock:
        skip = _skip[0] > 0
        _skip[0] -= skip
    if skip:
        return api(environ, start_response)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        # the body is produced inside the profile (Flask's are lists already)
        return list(api(environ, start_response))
    finally:
        session = profiler.stop()
        with _lock:
            _sessions.append(session)


def _combined(sessions):
    """All the requests' samples in one session (Session.combine pairwise is quadratic)."""
    first = sessions[0]
    return Session(
        frame_records=[record for s in sessions for record in s.frame_records],
        start_time=first.start_time,
        min_interval=min(s.min_interval for s in sessions),
        max_interval=max(s.max_interval for s in sessions),
        duration=sum(s.duration for s in sessions),
        sample_count=sum(s.sample_count for s in sessions),
        start_call_stack=first.start_call_stack,
        target_description=f"{len(sessions)} requests",
        cpu_time=sum(s.cpu_time for s in sessions),
        sys_path=first.sys_path,
        sys_prefixes=first.sys_prefixes,
    )


@atexit.register
def _write_reports():
    prefix = os.environ.get("PROFILE_OUT")
    if not _sessions or not prefix:
        return
    session = _combined(_sessions)
    Path(prefix + ".html").write_text(HTMLRenderer().render(session))
    Path(prefix + ".txt").write_text(ConsoleRenderer(unicode=True, show_all=True).render(session))
    Path(prefix + "-flat.txt").write_text(ConsoleRenderer(unicode=True, flat=True).render(session))
