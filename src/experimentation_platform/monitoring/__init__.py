"""The platform's monitoring definitions: dashboards, alert rules, log groups, saved queries."""
