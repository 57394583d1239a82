//! Runnable examples of qtasks: see `examples/`.
