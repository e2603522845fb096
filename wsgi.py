"""The production entry point: `gunicorn wsgi:app`, and what `flask` finds"""

from todo import create_app

app = create_app()
