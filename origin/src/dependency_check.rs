//! The server's dependencies are what the server needs: the load generator's
//! crates (its histograms) live in `bench/`, and a dependency on them here
//! would compile them into every `pushwire` build. (`tokio-tungstenite` is
//! shared: socketioxide's Engine.IO already builds it into the server, and the
//! Pusher-protocol endpoint uses it directly.)

/// Crates only the load generator uses.
const GENERATOR_ONLY: &[&str] = &["hdrhistogram", "pushwire-bench"];

#[test]
fn the_server_does_not_depend_on_the_load_generator_s_crates() {
    let manifest = include_str!("../Cargo.toml");
    let listed: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .collect();
    for name in GENERATOR_ONLY {
        assert!(
            !listed.contains(name),
            "origin/Cargo.toml lists {name}, which only the load generator (bench/) needs"
        );
    }
}
