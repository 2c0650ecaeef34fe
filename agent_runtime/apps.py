from django.apps import AppConfig


class AgentRuntimeConfig(AppConfig):
    name = "agent_runtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_install_defaults, sender=self)


def _install_defaults(**kwargs: object) -> None:
    """The default agent and the offline model's (zero) price, once the tables exist."""
    from agent_runtime.services import agents_install_defaults

    agents_install_defaults()
