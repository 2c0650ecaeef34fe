from django.apps import AppConfig


class AccessConfig(AppConfig):
    """API tokens, their scopes and rate limits: who may call the REST API, and how often."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from access import openapi  # noqa: F401  (registers the token scheme with drf-spectacular)
