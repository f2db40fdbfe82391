//! One instruction line as a typed [`Instruction`]. Only the instructions that touch nothing but
//! the image config are here so far (what `--change` accepts: CMD, ENTRYPOINT, ENV, EXPOSE,
//! LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD); arguments that take variables are
//! expanded from the environment given, as the config stands when the line applies.

use crate::lex::{exec_form, key_values, shell_words};
use crate::{DockerfileError, Result};

/// A command in exec form (a JSON array) or shell form (a string the shell runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `["/bin/app", "-x"]`.
    Exec(Vec<String>),
    /// `app -x`, run as `/bin/sh -c 'app -x'` by default.
    Shell(String),
}

impl Command {
    fn parse(args: &str) -> Self {
        match exec_form(args) {
            Some(v) => Command::Exec(v),
            None => Command::Shell(args.to_string()),
        }
    }

    /// The argv with the default shell (`/bin/sh -c`) for the shell form.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// One instruction, its arguments parsed (and expanded where Docker expands them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `ENV k=v ...` (or `ENV k v`), in order.
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`.
    Label(Vec<(String, String)>),
    /// `EXPOSE 80 53/udp`, each as `port/proto`.
    Expose(Vec<String>),
    /// `VOLUME /a /b` or `VOLUME ["/a"]`.
    Volume(Vec<String>),
    /// `USER name[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `STOPSIGNAL SIGTERM`.
    StopSignal(String),
    /// `ONBUILD <instruction>`, kept as written for the child.
    OnBuild(String),
}

/// Parses one `--change` line with variables expanded from `env` (`NAME=value` entries).
pub fn parse_change(line: &str, env: &[String]) -> Result<Instruction> {
    let line = line.trim();
    let (instr, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let args = args.trim();
    let expand = |a: &str| -> Result<String> { Ok(shell_words(a, env)?.join(" ")) };
    Ok(match instr.to_ascii_uppercase().as_str() {
        "CMD" => Instruction::Cmd(Command::parse(args)),
        "ENTRYPOINT" => Instruction::Entrypoint(Command::parse(args)),
        "ENV" => Instruction::Env(key_values(args, true, env)?),
        "LABEL" => Instruction::Label(key_values(args, true, env)?),
        "EXPOSE" => Instruction::Expose(args.split_whitespace().map(port).collect::<Result<Vec<_>>>()?),
        "VOLUME" => Instruction::Volume(
            exec_form(args).unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect()),
        ),
        "USER" => Instruction::User(expand(args)?),
        "WORKDIR" => Instruction::Workdir(expand(args)?),
        "STOPSIGNAL" => Instruction::StopSignal(args.to_string()),
        "ONBUILD" => Instruction::OnBuild(args.to_string()),
        "" => return Err(DockerfileError::Empty),
        other => return Err(DockerfileError::NotAllowed(other.to_string())),
    })
}

/// `80` as `80/tcp`; a protocol other than tcp, udp or sctp, or a bad number, is refused.
fn port(p: &str) -> Result<String> {
    let p = if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    };
    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(DockerfileError::Syntax(format!("invalid port {p:?}")));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, env: &[&str], expect: Result<Instruction>) {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_change(line, &env), expect, "{line}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn change_lines() {
        use Instruction::*;
        check("CMD [\"/bin/sh\"]", &[], Ok(Cmd(Command::Exec(s(&["/bin/sh"])))));
        check("cmd echo hi", &[], Ok(Cmd(Command::Shell("echo hi".into()))));
        check(
            "ENTRYPOINT [\"a\", \"b\"]",
            &[],
            Ok(Entrypoint(Command::Exec(s(&["a", "b"])))),
        );
        check("ENV A=1 B=\"x y\"", &[], Ok(Env(kv(&[("A", "1"), ("B", "x y")]))));
        check("ENV A  2 3", &[], Ok(Env(kv(&[("A", "2 3")]))));
        check("LABEL a=$X", &["X=1"], Ok(Label(kv(&[("a", "1")]))));
        check("EXPOSE 80 53/udp", &[], Ok(Expose(s(&["80/tcp", "53/udp"]))));
        check("VOLUME [\"/data\"]", &[], Ok(Volume(s(&["/data"]))));
        check("VOLUME /a /b", &[], Ok(Volume(s(&["/a", "/b"]))));
        check("USER ${U:-1000}:1000", &[], Ok(User("1000:1000".into())));
        check("WORKDIR $HOME/w", &["HOME=/root"], Ok(Workdir("/root/w".into())));
        check("STOPSIGNAL SIGINT", &[], Ok(StopSignal("SIGINT".into())));
        check("ONBUILD RUN make", &[], Ok(OnBuild("RUN make".into())));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let syntax = |m: &str| Err(DockerfileError::Syntax(m.into()));
        check("RUN rm -rf /", &[], Err(DockerfileError::NotAllowed("RUN".into())));
        check("  ", &[], Err(DockerfileError::Empty));
        check("EXPOSE 99999", &[], syntax("invalid port \"99999/tcp\""));
        check("EXPOSE 80/icmp", &[], syntax("invalid port \"80/icmp\""));
        check("ENV A=\"unterminated", &[], syntax("unterminated quote"));
        check("ENV =x", &[], syntax("key may not be empty"));
        check("LABEL a=b c", &[], syntax("invalid key=value pair \"c\""));
        check("WORKDIR ${HOME", &[], syntax("missing '}' in a variable"));
        check("ENV A", &[], syntax("missing value"));
        assert_eq!(
            DockerfileError::NotAllowed("RUN".into()).to_string(),
            "RUN is not a valid change command"
        );
    }
}
