from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from tools.adapters import load_adapters

        load_adapters()
        post_migrate.connect(_install_default_contracts, sender=self)


def _install_default_contracts(**kwargs: object) -> None:
    """Like Django's own permissions: every adapter gets its default contract once the tables exist."""
    from tools.services.contracts import contracts_install_defaults

    contracts_install_defaults()
