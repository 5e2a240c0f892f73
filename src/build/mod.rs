//! The build scheduler: walks the plan's graph, asks the cache, runs ops, assembles the image.
