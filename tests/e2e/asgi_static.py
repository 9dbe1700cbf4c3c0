"""The real ASGI application, plus /static/ served from the finders.

daphne serves no static files by itself, and with DEBUG off nothing else does
in the test settings; the browser needs htmx and uPlot. The
wrapper answers only HTTP requests under STATIC_URL and hands everything else
(pages, websockets) to ``metaweb.asgi.application`` unchanged.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from metaweb.asgi import application as _application

application = ASGIStaticFilesHandler(_application)
