//! Helpers shared by the end-to-end tests of the binary.

#![allow(dead_code)]

pub mod http;
pub mod llama3_model;
pub mod run;
mod tiny_model;
pub mod train;

pub use tiny_model::tiny_model_dir;
