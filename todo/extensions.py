"""Extension objects, created unbound and initialised in the application factory"""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from todo.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
