//! `examples/mutual-tls/README.md` run as a user pastes it: its shell blocks, in order, in one
//! shell, in a copy of the example; each block followed by a `text` block must print exactly
//! that. The README is the test's only source, so the docs cannot drift.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The README's fenced blocks: (language, text).
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            // The CA is made by the README itself.
            if e.file_name() != "ca" {
                copy_dir(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_mutual_tls_readme_prints_what_it_says() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = root.join("examples/mutual-tls");
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    let blocks = blocks(&readme);
    // One script: every `sh` block, a marker after each so that its output can be told apart.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let mut script = String::from("set -u\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n");
    let mut expected = Vec::new();
    let mut index = 0;
    for (i, (lang, text)) in blocks.iter().enumerate() {
        if lang != "sh" {
            continue;
        }
        script.push_str(text);
        script.push_str(&format!("echo '@@block {index}@@'\n"));
        let next = blocks.get(i + 1).filter(|(l, _)| l == "text");
        expected.push(next.map(|(_, t)| t.clone()));
        index += 1;
    }
    assert!(expected.iter().filter(|e| e.is_some()).count() >= 3);
    let work = tempfile::tempdir().unwrap();
    copy_dir(&example, &work.path().join("examples/mutual-tls"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the whole README runs in a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the README's commands did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut rest: &str = &stdout;
    for (i, want) in expected.iter().enumerate() {
        let marker = format!("@@block {i}@@\n");
        let at = rest
            .find(&marker)
            .unwrap_or_else(|| panic!("block {i} did not finish:\n{stdout}\n{stderr}"));
        let got = &rest[..at];
        if let Some(want) = want {
            assert_eq!(
                got, want,
                "block {i} printed something else; stderr:\n{stderr}"
            );
        }
        rest = &rest[at + marker.len()..];
    }
}
