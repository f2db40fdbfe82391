//! Dockerfile syntax, with no IO: `parser` reads a whole Dockerfile into stages of lines,
//! `lex` splits words and expands variables as BuildKit's shell lexer does, `instruction`
//! turns one instruction line into a typed [`Instruction`]. The
//! `--change` lines of `import` and `commit` are parsed here, and the builder will parse whole
//! Dockerfiles here, so both read the same syntax the same way.

#![forbid(unsafe_code)]

pub mod ignore;
pub mod instruction;
pub mod lex;
pub mod parser;

pub use instruction::{parse_change, Command, Instruction};
pub use parser::{parse, Dockerfile, Heredoc, Line, Stage};

/// What a Dockerfile or a change line can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// Malformed syntax (quotes, variables, key=value pairs, ports).
    #[error("{0}")]
    Syntax(String),
    /// An instruction not allowed where it was used (`RUN` in a `--change`).
    #[error("{0} is not a valid change command")]
    NotAllowed(String),
    /// An empty line where an instruction was expected.
    #[error("empty change")]
    Empty,
    /// A Dockerfile that does not parse, with the line it fails on (1-based).
    #[error("dockerfile parse error line {line}: {message}")]
    Parse {
        /// Where.
        line: usize,
        /// What.
        message: String,
    },
}

/// This module's results.
pub type Result<T> = std::result::Result<T, DockerfileError>;
