//! Reads a README the way a reader pastes it: its ```sh blocks in order, each with the ```text
//! block that follows it (before the next ```sh block) as the output it documents.

/// One shell block of a README and what it documents.
#[derive(Debug, Clone)]
pub struct Block {
    /// The commands, as written.
    pub code: String,
    /// Line of the README where the block starts (for messages).
    pub line: usize,
    /// The documented output, if the README shows one.
    pub expected: Option<Expected>,
}

/// A documented output.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The lines shown.
    pub text: String,
    /// `<!-- compare: first word -->` before the block: only each line's first word is fixed
    /// (the rest varies, e.g. dates).
    pub first_word_only: bool,
}

impl Block {
    /// A block that starts an example's long-running processes (`examples/run.sh NAME …`):
    /// pasted in a terminal of its own, it keeps running.
    pub fn is_long_running(&self) -> bool {
        let lines: Vec<&str> = commands(&self.code).collect();
        lines.len() == 1 && lines[0].starts_with("examples/run.sh ")
    }
}

/// The command lines of a block, without blank and comment lines.
fn commands(code: &str) -> impl Iterator<Item = &str> {
    code.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The ```sh blocks of `markdown`, in order, with their documented outputs.
pub fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    // Whether the last shell block may still take a ```text block as its output.
    let mut open = false;
    let mut previous_line = "";
    let mut fence: Option<(String, usize, bool, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut fence {
            None => {
                if let Some(lang) = line.trim_start().strip_prefix("```") {
                    let first_word = previous_line.trim() == "<!-- compare: first word -->";
                    fence = Some((lang.trim().to_string(), i + 1, first_word, String::new()));
                }
                previous_line = line;
            }
            Some((lang, start, first_word, body)) => {
                if line.trim_start().starts_with("```") {
                    match lang.as_str() {
                        "sh" => {
                            blocks.push(Block {
                                code: std::mem::take(body),
                                line: *start,
                                expected: None,
                            });
                            open = true;
                        }
                        "text" if open => {
                            if let Some(b) = blocks.last_mut() {
                                b.expected = Some(Expected {
                                    text: std::mem::take(body),
                                    first_word_only: *first_word,
                                });
                            }
                            open = false;
                        }
                        _ => {}
                    }
                    fence = None;
                    previous_line = "";
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

/// The lines that are compared: trailing blanks cut, `pid N` numbers hidden, `latency ms:`
/// lines (timings) and blank lines left out.
fn comparable(text: &str, first_word_only: bool) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("latency ms:"))
        .map(|l| {
            let l = hide_pids(l);
            if first_word_only {
                l.split_whitespace().next().unwrap_or("").to_string()
            } else {
                l
            }
        })
        .collect()
}

/// `pid 41235` → `pid N`.
fn hide_pids(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("pid ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether `actual` is the documented output: the same lines, in order.
pub fn matches(expected: &Expected, actual: &str) -> bool {
    comparable(&expected.text, expected.first_word_only)
        == comparable(actual, expected.first_word_only)
}

/// Whether every documented line appears in `actual`, in order, with other lines (logs of the
/// running processes) in between.
pub fn appears_in(expected: &Expected, actual: &str) -> bool {
    let actual = comparable(actual, expected.first_word_only);
    let mut it = actual.iter();
    comparable(&expected.text, expected.first_word_only)
        .iter()
        .all(|want| it.any(|got| got == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_take_the_text_block_after_them() {
        let md = "# T\n\n```sh\nexamples/run.sh canary\n```\n\nprose\n\n```sh\na\nb\n```\n\n<!-- compare: first word -->\n```text\none x\n```\n\n```text\nignored\n```\n";
        let blocks = shell_blocks(md);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].is_long_running() && blocks[0].expected.is_none());
        assert!(!blocks[1].is_long_running());
        let e = blocks[1]
            .expected
            .as_ref()
            .unwrap_or_else(|| panic!("no output"));
        assert!(e.first_word_only);
        assert!(matches(e, "one y\n"));
        assert!(!matches(e, "two x\n"));
    }

    #[test]
    fn pids_and_latencies_vary() {
        let e = Expected {
            text: "pid 12  sluice run x\nlatency ms: p50=1\nok\n".into(),
            first_word_only: false,
        };
        assert!(matches(&e, "pid 99  sluice run x\nok\nlatency ms: p50=3\n"));
        assert!(appears_in(&e, "log\npid 7  sluice run x\nlog\nok\n"));
        assert!(!appears_in(&e, "ok\npid 7  sluice run x\n"));
    }
}
