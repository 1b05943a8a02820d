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
