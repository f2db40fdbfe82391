//! The parser's data-driven tests: Dockerfiles in, lines and errors out.

use super::*;

fn lines(df: &Dockerfile) -> Vec<(usize, String)> {
    df.stages
        .iter()
        .flat_map(|s| std::iter::once(&s.from).chain(&s.lines))
        .map(|l| (l.line, l.display()))
        .collect()
}

fn check(text: &str, expect: &[(usize, &str)]) {
    let df = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let want: Vec<(usize, String)> = expect.iter().map(|(n, s)| (*n, s.to_string())).collect();
    assert_eq!(lines(&df), want, "{text:?}");
}

fn fails(text: &str, expect: &str) {
    assert_eq!(parse(text).unwrap_err().to_string(), expect, "{text:?}");
}

#[test]
fn lines_continuations_and_comments() {
    check(
        "FROM busybox\nRUN echo hi\n",
        &[(1, "FROM busybox"), (2, "RUN echo hi")],
    );
    check("from busybox\nrun echo hi", &[(1, "FROM busybox"), (2, "RUN echo hi")]);
    check(
        "FROM busybox\r\n\r\n# c\r\nRUN echo \\\r\n  hi\r\n",
        &[(1, "FROM busybox"), (4, "RUN echo   hi")],
    );
    // Comments and empty lines inside a continuation are dropped.
    check(
        "FROM busybox\nRUN echo a \\\n# inside\n\n  b \\\n  c\nCMD x",
        &[(1, "FROM busybox"), (2, "RUN echo a   b   c"), (7, "CMD x")],
    );
    // A continuation at the end of the file ends the line.
    check("FROM busybox\nRUN echo a \\", &[(1, "FROM busybox"), (2, "RUN echo a")]);
    check(
        "FROM busybox\n  RUN   --mount=type=cache,target=/c --network=none   make  ",
        &[
            (1, "FROM busybox"),
            (2, "RUN --mount=type=cache,target=/c --network=none make"),
        ],
    );
}

#[test]
fn directives() {
    let df = parse("# syntax=docker/dockerfile:1.7\n# escape=`\nFROM busybox\nRUN echo a `\n b").unwrap();
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.stages[0].lines[0].args, "echo a  b");
    // With ` as escape, a backslash is a plain character (Windows paths).
    let df = parse("# escape=`\nFROM busybox\nCOPY a\\ b\\").unwrap();
    assert_eq!(df.stages[0].lines[0].args, "a\\ b\\");
    for ok in [
        "docker/dockerfile:1",
        "docker.io/docker/dockerfile:1.4.3",
        "docker/dockerfile:1@sha256:ab",
    ] {
        assert!(parse(&format!("# syntax={ok}\nFROM a")).is_ok(), "{ok}");
    }
    fails(
        "# syntax=example.com/my/frontend\nFROM a",
        "dockerfile parse error line 1: unsupported frontend \"example.com/my/frontend\": this builder has docker/dockerfile:1 built in and fetches no other",
    );
    fails(
        "# escape=x\nFROM a",
        "dockerfile parse error line 1: invalid escape token 'x' does not match ` or \\",
    );
    fails(
        "# escape=`\n# escape=\\\nFROM a",
        "dockerfile parse error line 2: only one escape parser directive can be used",
    );
    // After a comment or an instruction, a directive is only a comment.
    let df = parse("# hello\n# escape=`\nFROM a\nRUN x \\\n y").unwrap();
    assert_eq!(df.directives.escape, '\\');
    assert_eq!(df.stages[0].lines[0].args, "x  y");
    let df = parse("# check=skip=all\nFROM a").unwrap();
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
}

#[test]
fn heredocs() {
    let df = parse("FROM a\nRUN <<EOF\necho one\necho $X\nEOF\nCMD x").unwrap();
    let run = &df.stages[0].lines[0];
    assert_eq!(run.args, "<<EOF");
    assert_eq!(
        run.heredocs,
        [Heredoc {
            name: "EOF".into(),
            content: "echo one\necho $X\n".into(),
            expand: true
        }]
    );
    assert_eq!(df.stages[0].lines[1].line, 6);
    // `<<-` strips leading tabs (of the delimiter line too); a quoted delimiter expands nothing.
    let df = parse("FROM a\nRUN <<-'END'\n\tline $X\n\tEND\n").unwrap();
    assert_eq!(df.stages[0].lines[0].heredocs[0].content, "line $X\n");
    assert!(!df.stages[0].lines[0].heredocs[0].expand);
    // Several on one line, in order; COPY writes them as files.
    let df = parse("FROM a\nCOPY <<A <<\"B\" /dst/\nfirst\nA\nsecond\nB\n").unwrap();
    let names: Vec<_> = df.stages[0].lines[0]
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_str()))
        .collect();
    assert_eq!(names, [("A", "first\n"), ("B", "second\n")]);
    // A here-string or a redirection of a number is no heredoc.
    let df = parse("FROM a\nRUN cat <<< word && echo 2<<1\nCMD x").unwrap();
    assert!(df.stages[0].lines[0].heredocs.is_empty());
    // Only RUN, COPY and ADD take heredocs.
    let df = parse("FROM a\nLABEL x=<<EOF\nCMD y").unwrap();
    assert_eq!(df.stages[0].lines.len(), 2);
    fails(
        "FROM a\nRUN <<EOF\necho",
        "dockerfile parse error line 2: unterminated heredoc EOF",
    );
}

#[test]
fn stages_and_meta_args() {
    let df = parse("ARG BASE=busybox\nARG V\nFROM $BASE AS Build\nRUN make\nFROM --platform=linux/amd64 scratch\nCOPY --from=build /out /").unwrap();
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.meta_args[0].args, "BASE=busybox");
    assert_eq!(df.stages.len(), 2);
    assert_eq!(
        (df.stages[0].base.as_str(), df.stages[0].name.as_deref()),
        ("$BASE", Some("build"))
    );
    assert_eq!(df.stages[1].from.flag("platform"), Some("linux/amd64"));
    assert_eq!(df.stages[1].lines[0].flag("from"), Some("build"));
    let run = parse("FROM a\nRUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/t x").unwrap();
    assert_eq!(
        run.stages[0].lines[0].flag_all("mount"),
        ["type=cache,target=/a", "type=tmpfs,target=/t"]
    );
    // ONBUILD keeps its instruction's flags as written.
    let ob = parse("FROM a\nONBUILD COPY --from=x /a /b").unwrap();
    assert_eq!(ob.stages[0].lines[0].args, "COPY --from=x /a /b");
}

#[test]
fn errors_name_the_line() {
    fails(
        "FROM a\nRUN x\nFOO bar",
        "dockerfile parse error line 3: unknown instruction: FOO",
    );
    fails(
        "FROM a\n\n  bogus",
        "dockerfile parse error line 3: unknown instruction: bogus",
    );
    fails(
        "RUN x\nFROM a",
        "dockerfile parse error line 1: no build stage in current context",
    );
    fails(
        "FROM a b",
        "dockerfile parse error line 1: FROM requires either one or three arguments",
    );
    fails(
        "FROM",
        "dockerfile parse error line 1: FROM requires either one or three arguments",
    );
    fails(
        "FROM a AS 1x",
        "dockerfile parse error line 1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
    );
    fails(
        "FROM --pull=always a",
        "dockerfile parse error line 1: unknown flag: pull",
    );
    fails("", "the Dockerfile (Dockerfile) cannot be empty");
    fails("# only a comment\n\n", "the Dockerfile (Dockerfile) cannot be empty");
    fails("ARG A\n", "the Dockerfile (Dockerfile) cannot be empty");
}

/// Anything, however hostile, parses or fails with an error: no panic, no hang.
#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet: Vec<char> = "FROM RUN COPY <<-EOF'\"\\`#=\n\r\t ${}:-+?%/*abc".chars().collect();
    for _ in 0..3000 {
        let mut s = String::new();
        for _ in 0..(seed % 200) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let _ = parse(&s);
        let _ = crate::lex::shell_words(&s, &["a=1".into()]);
    }
}
