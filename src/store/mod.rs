//! The content-addressed store: blobs, the OCI image layout, tags, the cache index.
//! Knows nothing of Dockerfiles.
