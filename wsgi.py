"""The production entry point: `gunicorn wsgi:app`, and what `flask` finds"""

import sys

from todo import create_app
from todo.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One line saying why, not a traceback. Exit status 4 is gunicorn's "application
    # failed to load": its arbiter stops instead of respawning workers forever.
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(4) from None
