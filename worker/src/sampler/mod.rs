//! Samplers matching diffusers schedulers (being written).
