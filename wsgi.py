"""The production entry point: `gunicorn wsgi:app`, and what `flask` finds"""

import sys

from todo import create_app
from todo.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One line, not a traceback, for gunicorn and for every `flask` command.
    sys.exit(f"configuration error: {error}")
