"""Observability toolkit for ASGI services: logs, context, metrics, errors, alerts, dashboards.

It never imports the experimentation platform: any ASGI app can use it.
"""
