//! Any bytes through the Dockerfile parser, the word lexer of every line, and `.dockerignore`:
//! an error is fine, a panic, a hang or a blow-up is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = wharf_dockerfile::parse(text) {
        let env = ["A=1".to_string(), "B=two words".to_string()];
        for stage in &df.stages {
            for line in &stage.lines {
                let _ = wharf_dockerfile::lex::shell_words(&line.args, &env);
                let _ = wharf_dockerfile::lex::key_values(&line.args, true, &env);
            }
        }
    }
    let ignore = wharf_dockerfile::ignore::Ignore::parse(text);
    let _ = ignore.excludes("src/a/b.txt");
});
