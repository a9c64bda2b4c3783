"""Image builders: each turns a build context into an image pushed to a registry, named by digest."""
