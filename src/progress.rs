//! Build events and their renderers: indicatif on a terminal, plain lines otherwise.
//! The library never prints; it sends events here.
