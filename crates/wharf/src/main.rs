//! `wharf`, the command-line client. Not built yet: until it is, it says so and points at the
//! docker CLI, which drives wharfd fully through the Engine API.

fn main() {
    eprintln!(
        "wharf: the native CLI is not implemented yet.\n\
         Use the docker CLI against wharfd: DOCKER_HOST=unix:///run/wharf/wharf.sock docker ..."
    );
    std::process::exit(1);
}
