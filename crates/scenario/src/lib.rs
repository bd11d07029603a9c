//! thpsim-scenario: the scenario language (parser, diagnostics, the op table the docs are
//! generated from), the backend interface, and the pure engine that runs a scenario on a
//! backend and evaluates its expectations.
#![forbid(unsafe_code)]

pub mod ast;
pub mod backend;
pub mod diag;
pub mod docs;
pub mod engine;
pub mod fuzzing;
pub mod parse;
pub mod pattern;
pub mod progen;
pub mod settings;
pub mod sim;
pub mod table;

pub use ast::Scenario;
pub use diag::Diagnostic;
pub use parse::parse;
