//! Container names: Docker's rule for user-given names, and random `adjective_surname` names
//! for the rest (the words are ours; the shape is Docker's).

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, with an optional leading `/`.
pub fn valid_name(name: &str) -> bool {
    wharf_reference::valid_object_name(name.strip_prefix('/').unwrap_or(name))
}

const LEFT: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "calm",
    "charming",
    "clever",
    "cool",
    "compassionate",
    "confident",
    "cranky",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "funny",
    "gallant",
    "gifted",
    "gracious",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const RIGHT: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "boole",
    "borg",
    "bose",
    "brahmagupta",
    "cannon",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "knuth",
    "lamarr",
    "lamport",
    "leakey",
    "liskov",
    "lovelace",
    "lumiere",
    "mayer",
    "mccarthy",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "perlman",
    "poincare",
    "ramanujan",
    "ritchie",
    "sammet",
    "shannon",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volhard",
    "wescoff",
    "wiles",
    "williams",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// A random `adjective_surname`; `retry` > 0 appends a digit as Docker does after collisions.
pub fn random_name(seed: &[u8], retry: usize) -> String {
    let a = u16::from_le_bytes([seed[0], seed[1]]) as usize % LEFT.len();
    let b = u16::from_le_bytes([seed[2], seed[3]]) as usize % RIGHT.len();
    let mut n = format!("{}_{}", LEFT[a], RIGHT[b]);
    if retry > 0 {
        n.push_str(&(seed[4] % 10).to_string());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        for ok in ["web", "/web", "a1", "my_app.v2-x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "../x", "a/b", "..", "-x", "_x", "x y", &"a".repeat(300)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn random_names_are_valid() {
        for i in 0..=255u8 {
            let n = random_name(&[i, i.wrapping_mul(7), i.wrapping_add(3), 1, i], usize::from(i % 2));
            assert!(valid_name(&n), "{n}");
            assert!(n.contains('_'));
        }
    }
}
