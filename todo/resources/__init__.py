"""HTTP resources"""

from todo.resources import tasks

MODULES = (tasks,)


def register_blueprints(api):
    for module in MODULES:
        api.register_blueprint(module.blp, parameters=module.URL_PREFIX_PARAMETERS)
