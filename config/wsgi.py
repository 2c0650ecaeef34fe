import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from lib import otel

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the handler loads its middleware (Django's instrumentation puts its own first); off unless OTEL_* ask.
otel.tracing_configure(service_name="agent-ops-web", exporters=settings.TRACING_EXPORTERS, django=True, celery=True)
application = get_wsgi_application()
