"""The handlers of each imitated resource provider, one module per resource type (see ../routing.py for the routes)."""
