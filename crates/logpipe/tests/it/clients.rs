//! The client libraries the protocol tests drive (tests/clients/requirements.txt) are the pinned
//! versions: a stale virtualenv would test against other clients than the ones named.

use crate::support::{read_repo_file, run_python};

#[test]
fn the_client_virtualenv_holds_the_pinned_libraries() {
    let pins: Vec<(String, String)> =
        read_repo_file("crates/logpipe/tests/clients/requirements.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, version) = l.split_once("==").expect("pinned as name==version");
                (name.to_string(), version.to_string())
            })
            .collect();
    assert!(!pins.is_empty());
    let script = "import sys\nfrom importlib.metadata import version\nfor name in sys.argv[1:]:\n    print(name, version(name))\n";
    let names: Vec<&str> = pins.iter().map(|(n, _)| n.as_str()).collect();
    let (status, stdout, _) = run_python(script, &names, &[]);
    assert!(status.success(), "{stdout}");
    for (name, version) in &pins {
        assert!(
            stdout.lines().any(|l| l == format!("{name} {version}")),
            "{name}=={version} is not installed (scripts/test.sh reinstalls the virtualenv when requirements.txt changes): {stdout}"
        );
    }
}
