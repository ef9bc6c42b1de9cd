"""Models and catalogs from object storage, HTTP(S) or volumes: URIs, fetching, pins."""
