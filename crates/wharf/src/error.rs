//! The CLI's one error type and how each kind reads and exits, as the docker CLI prints them.

/// Everything that can go wrong in a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon answered with an error status.
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The daemon could not be reached.
    #[error("{0}")]
    Connect(String),
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    /// The daemon said something this client cannot read.
    #[error("{0}")]
    Protocol(String),
    /// A template failed.
    #[error("template: {0}")]
    Template(String),
    /// Local IO.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP.
    #[error("error during connect: {0}")]
    Http(#[from] hyper::Error),
    /// Exit quietly with this status (a container's exit code, for instance).
    #[error("exit status {0}")]
    Status(i32),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Status(c) => *c,
            CliError::Usage(_) => 125,
            _ => 1,
        }
    }
}

/// A prune without `-f`: there is no prompt to answer, so it is refused with the flag to pass.
pub fn require_force(force: bool, what: &str) -> Result<()> {
    if force {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{what} asks for confirmation; pass -f/--force to prune without it"
        )))
    }
}

/// Results in the CLI.
pub type Result<T> = std::result::Result<T, CliError>;
