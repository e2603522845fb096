"""The framework floor: a minimal Flask app returning a small constant JSON object.

benchmarks/run.py serves it with the same gunicorn configuration as the API
(`gunicorn -c gunicorn.conf.py --pythonpath benchmarks floor:app`), so every API
scenario can be given as a fraction of what Flask under that configuration can do
at all on the machine at hand.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def constant():
    return {"data": {"status": "ok"}, "meta": {"request_id": "floor"}}
