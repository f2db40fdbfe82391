//! The invariants hold on this workspace, and each check refuses what it is there to refuse.

use std::path::Path;

use xtask::*;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn rules() -> Rules {
    parse_rules(&std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()).unwrap()
}

#[test]
fn the_workspace_is_tidy() {
    let problems = tidy(root()).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn forbidden_edges_are_refused() {
    let mut packages = packages(root()).unwrap();
    assert!(check_deps(&rules(), &packages).is_empty());
    let pkg =
        |packages: &mut Vec<Package>, name: &str| -> usize { packages.iter().position(|p| p.name == name).unwrap() };
    // The CLI reaching for the shim's protocol, an engine crate for the API's models, the
    // store for the container service (a cycle waiting to happen), the API for the shim's
    // frames.
    let cli = pkg(&mut packages, "wharf");
    packages[cli].deps.insert("wharf-shim-proto".into());
    let api = pkg(&mut packages, "wharf-api");
    packages[api].deps.insert("wharf-shim-proto".into());
    let store = pkg(&mut packages, "wharf-store");
    packages[store].deps.insert("bollard-stubs".into());
    packages[store].deps.insert("wharf-container".into());
    let problems = check_deps(&rules(), &packages);
    assert_eq!(
        problems,
        [
            "wharf-store must not depend on bollard-stubs",
            "wharf-store must not depend on wharf-container (not in its allow-list)",
            "wharf-api must not depend on wharf-shim-proto (not in its allow-list)",
            "wharf-api must not depend on wharf-shim-proto",
            "wharf must not depend on wharf-shim-proto (not in its allow-list)",
        ],
    );
}

#[test]
fn a_debt_is_tolerated_while_it_exists_and_must_leave_the_list_once_paid() {
    // The engine's last debt (to bollard-stubs) is paid: play it again with an edge that
    // breaks the rules, listed as debt, then removed.
    let mut packages = packages(root()).unwrap();
    let mut rules = rules();
    rules
        .crates
        .get_mut("wharf-container")
        .unwrap()
        .debt
        .insert("bollard-stubs".into());
    let engine = packages.iter_mut().find(|p| p.name == "wharf-container").unwrap();
    engine.deps.insert("bollard-stubs".into());
    assert!(check_deps(&rules, &packages).is_empty(), "a listed debt is tolerated");
    let engine = packages.iter_mut().find(|p| p.name == "wharf-container").unwrap();
    engine.deps.remove("bollard-stubs");
    assert_eq!(
        check_deps(&rules, &packages),
        ["wharf-container: the debt edge to bollard-stubs is gone; take it off the rules block"]
    );
}

#[test]
fn unknown_crates_and_bad_rules_are_named() {
    let mut packages = packages(root()).unwrap();
    packages.push(Package {
        name: "wharf-new".into(),
        deps: Default::default(),
        roots: vec![],
    });
    assert_eq!(
        check_deps(&rules(), &packages),
        ["wharf-new: no dependency rule in ARCHITECTURE.md"]
    );
    let err = parse_rules("x\n## Dependency rules\n```text\nwharf: a | maybe: b\n```\n");
    assert_eq!(err.unwrap_err(), "dependency rules, line 2: unknown part \" maybe: b\"");
    assert!(parse_rules("# nothing here").is_err());
}

#[test]
fn module_docs_and_forbid_unsafe() {
    assert_eq!(check_module_doc("a.rs", "\n//! Does a.\nfn x() {}\n"), None);
    assert_eq!(
        check_module_doc("b.rs", "// a comment\n//! late\n"),
        Some("b.rs: no `//!` paragraph at the top".into())
    );
    assert_eq!(check_forbid_unsafe("lib.rs", "//! x\n#![forbid(unsafe_code)]\n"), None);
    assert!(check_forbid_unsafe("lib.rs", "//! x\n").is_some());
}

#[test]
fn long_functions_are_measured_as_rustfmt_lays_them_out() {
    let body = "    let x = 1;\n".repeat(151);
    let src = format!(
        "//! m\n\ntrait T {{\n    fn decl(&self);\n}}\n\npub(crate) async fn big() {{\n{body}}}\n\nfn one() {{}}\n\nimpl S {{\n    fn small(&self) -> u8 {{\n        if true {{\n            1\n        }} else {{\n            2\n        }}\n    }}\n}}\n"
    );
    let long = long_functions(&src, MAX_FN_LINES);
    assert_eq!(long, [("big".to_string(), 7, 153)]);
    let all = long_functions(&src, 0);
    let names: Vec<_> = all.iter().map(|(n, _, l)| (n.as_str(), *l)).collect();
    assert_eq!(names, [("big", 153), ("one", 1), ("small", 7)]);
}

#[test]
fn sizes_may_only_shrink() {
    assert_eq!(check_size("new.rs", "new.rs", 1000, MAX_FILE_LINES), None);
    assert_eq!(
        check_size("new.rs", "new.rs", 1001, MAX_FILE_LINES).unwrap(),
        "new.rs is 1001 lines (at most 1000)"
    );
    let list = [("big.rs", 1200), ("big.rs::f", 200)];
    assert_eq!(check_size_in(&list, "big.rs", "big.rs", 1200, MAX_FILE_LINES), None);
    assert_eq!(
        check_size_in(&list, "big.rs", "big.rs", 1201, MAX_FILE_LINES).unwrap(),
        "big.rs is 1201 lines: it may only shrink (at most 1200 until it is split)"
    );
    assert_eq!(
        check_size_in(&list, "big.rs::f", "big.rs:3: fn f", 150, MAX_FN_LINES).unwrap(),
        "big.rs:3: fn f is 150 lines, within the limit: take big.rs::f off xtask's OVERSIZE"
    );
}
