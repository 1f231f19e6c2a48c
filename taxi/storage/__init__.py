"""The S3 artifact store, one module per concern:

- `objects`: plain objects in a bucket (get, put-verified, list, delete, and the conditional
  writes: put-if-absent, replace- and delete-if-unchanged) and the project's storage errors;
- `manifests`: a model version's manifest, signature and `latest` marker as bytes, made and
  checked without a bucket;
- `registry`: model versions on top of the object store (publishing, loading, `latest`);
- `predictions`: writing predictions.

Keys and URIs are formatted by taxi.layout, without a client.
"""
