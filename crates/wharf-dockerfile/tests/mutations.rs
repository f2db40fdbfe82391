//! The fuzz target's properties on stable, deterministically: seed Dockerfiles that use every
//! construct, mutated tens of thousands of times (bytes flipped, the parser's special
//! characters inserted, pieces cut and repeated), through the parser, the lexer of every line
//! and `.dockerignore`. An error is fine; a panic, a hang, or an output out of proportion to
//! the input is a defect (the fuzz target in `fuzz/` explores further under cargo-fuzz).

const SEEDS: &[&str] = &[
    "# syntax=docker/dockerfile:1\n# escape=`\nARG BASE=busybox\nFROM ${BASE:-x} AS a\nRUN echo `\n  hi\n",
    "FROM busybox\nRUN <<EOF\necho $A ${B:+x} ${C:-y} ${D#*/} ${E%%.*} ${F/a/b}\nEOF\nCOPY <<-X <<Y /d/\n\tx\nX\ny\nY\n",
    "FROM scratch\nENV a=1 b=\"two words\" c='3'\nLABEL \"k\"=\"v\" x=y\nEXPOSE 80/tcp 53/udp\nCMD [\"a\", \"b\\\"c\"]\n",
    "FROM busybox AS build\nRUN --mount=type=cache,target=/c --network=none make\nFROM build\nCOPY --from=build --chown=1:2 --chmod=640 /a /b\nONBUILD RUN x\nHEALTHCHECK --interval=5s CMD true\n",
    "FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nWORKDIR /a/../b\nUSER 1000:1000\nVOLUME [\"/v\"]\nSTOPSIGNAL SIGTERM\nADD --checksum=sha256:00 http://h/f /f\n",
];

const SPECIAL: &[&[u8]] = &[
    b"\\",
    b"\\\n",
    b"$",
    b"${",
    b"}",
    b"\"",
    b"'",
    b"<<",
    b"<<-",
    b"EOF",
    b"\n",
    b"#",
    b"`",
    b"[",
    b"]",
    b"=",
    b"--",
    b":-",
    b":+",
    b"%%",
    b"##",
    b"/",
    b"\r\n",
    b"\t",
    b"FROM x\n",
    b"\xc3\xa9",
];

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(r: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + r.below(6) {
        let at = r.below(b.len() + 1);
        match r.below(5) {
            0 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] ^= 1 << r.below(8);
            }
            1 => {
                let s = SPECIAL[r.below(SPECIAL.len())];
                b.splice(at..at, s.iter().copied());
            }
            2 if at < b.len() => {
                let end = (at + r.below(20)).min(b.len());
                b.drain(at..end);
            }
            3 if at < b.len() => {
                let end = (at + r.below(40)).min(b.len());
                let piece: Vec<u8> = b[at..end].to_vec();
                for _ in 0..r.below(4) {
                    b.splice(at..at, piece.iter().copied());
                }
            }
            _ => b.insert(at.min(b.len()), r.next() as u8),
        }
    }
    b
}

fn exercise(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = ["A=1".to_string(), "B=two words".to_string()];
    if let Ok(df) = wharf_dockerfile::parse(text) {
        for stage in &df.stages {
            for line in &stage.lines {
                if let Ok(words) = wharf_dockerfile::lex::shell_words(&line.args, &env) {
                    let out: usize = words.iter().map(String::len).sum();
                    assert!(out <= 64 * (text.len() + 64), "expansion out of proportion: {text:?}");
                }
                let _ = wharf_dockerfile::lex::key_values(&line.args, true, &env);
            }
        }
    }
    let _ = wharf_dockerfile::ignore::Ignore::parse(text).excludes("src/a/b.txt");
}

#[test]
fn mutated_dockerfiles_never_panic_or_blow_up() {
    let mut r = Rng(0x5eed_f00d_cafe_d00d);
    let started = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..4_000 {
        for seed in SEEDS {
            let m = mutate(&mut r, seed.as_bytes());
            exercise(&m);
            n += 1;
        }
    }
    assert_eq!(n, 20_000);
    // Not a timing test: a guard against a pathological slowdown (each input is < 1 KiB).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
}
