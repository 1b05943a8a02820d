//! The offline tool's corpus command: findings per detector, and the stream-vs-one-shot check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn bench_corpus_counts_findings_and_checks_streaming() {
    let dir = std::env::temp_dir().join(format!("edgeguard-corpus-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("a.txt"),
        "The deploy key is AKIAZ3MSJV4WWNKWW5FG; mail ops@corp-mail.io.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sub/b.rs"),
        "const H: &str = \"-----BEGIN PRIVATE KEY-----\"; // a header, no key\nfn main() {}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
        .args(["bench-corpus", "--chunks", "1..4", "--examples", "1"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("2 files"), "{text}");
    assert!(
        text.contains("aws_access_key") && text.contains("email"),
        "{text}"
    );
    assert!(
        !text.contains("private_key"),
        "a header alone is no key: {text}"
    );
    assert!(text.contains("0 differences"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redact_streams_stdin_in_pieces_with_the_one_push_output() {
    use std::io::Write;
    use std::process::Stdio;
    // A key and an address cut by the 7-byte pieces, between plenty of plain text.
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("line {i}: nothing to see here.\n"));
    }
    input.push_str("key AKIAZ3MSJV4WWNKWW5FG and mail ops@northwind-mail.io\n");
    input.push_str(&"tail text\n".repeat(50));
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .arg("redact")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (whole, whole_findings) = run(&[]);
    let (pieces, piece_findings) = run(&["--chunk", "7"]);
    assert_eq!(pieces, whole);
    assert_eq!(piece_findings, whole_findings);
    assert!(whole.contains("[REDACTED:aws_access_key]"), "{whole}");
    assert!(whole.contains("[REDACTED:email]"));
    assert_eq!(whole_findings.lines().count(), 2, "{whole_findings}");
    assert!(whole.ends_with("tail text\n"));
}
