//! Safety checks on layer tar entries before a layer is accepted into the store.
