//! # Layout
//!
//! (under construction)
