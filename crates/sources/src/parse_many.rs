//! Parsing many files at once: each file parses on its own, so a start-up or a reload that
//! reads thousands of them spreads the work over the machine's cores (parsing was most of the
//! start-up time at 10,000 services).

use std::sync::Arc;

use sluice_model::{parse_text, Parsed};

/// Below this many bytes a second thread costs more than it saves.
const MIN_BYTES_PER_THREAD: usize = 256 * 1024;

/// At most this many parsing threads, however many cores there are.
const MAX_THREADS: usize = 8;

/// Parses each `(text, file name)`, in parallel where it pays; results in the input's order.
pub fn parse_all(files: Vec<(String, Arc<str>)>) -> Vec<Parsed> {
    parse_all_with(files, |text, name| parse_text(text, Some(name)))
}

/// [`parse_all`] with `parse` for each file.
pub fn parse_all_with<T: Send>(
    files: Vec<(String, Arc<str>)>,
    parse: impl Fn(&str, Arc<str>) -> T + Sync,
) -> Vec<T> {
    let bytes: usize = files.iter().map(|(t, _)| t.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores
        .min(MAX_THREADS)
        .min(bytes / MIN_BYTES_PER_THREAD)
        .min(files.len())
        .max(1);
    if threads == 1 {
        return files
            .into_iter()
            .map(|(text, name)| parse(&text, name))
            .collect();
    }
    // Contiguous chunks of about equal bytes, so that the results concatenate in order.
    let mut chunks: Vec<Vec<(String, Arc<str>)>> = Vec::with_capacity(threads);
    let share = bytes.div_ceil(threads);
    let mut current = Vec::new();
    let mut size = 0;
    for f in files {
        size += f.0.len();
        current.push(f);
        if size >= share && chunks.len() + 1 < threads {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
    }
    chunks.push(current);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let parse = &parse;
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(text, name)| parse(&text, name))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(parsed) => parsed,
                // The parser does not panic on any input (it is fuzzed); if it ever did, the
                // panic belongs to the caller, as it would without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(i: usize) -> (String, Arc<str>) {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s{i}}}\nspec:\n  hosts: [s{i}.example.com]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n# {}\n",
            "x".repeat(40_000)
        );
        (text, Arc::from(format!("f{i}.yaml")))
    }

    #[test]
    fn results_keep_the_files_order_across_threads() {
        let files: Vec<_> = (0..40).map(file).collect();
        let parsed = parse_all(files);
        assert_eq!(parsed.len(), 40);
        for (i, p) in parsed.iter().enumerate() {
            assert_eq!(p.resources.len(), 1);
            assert_eq!(p.resources[0].metadata.name, format!("s{i}"));
            assert_eq!(
                p.resources[0].origin.file.as_deref(),
                Some(&*format!("f{i}.yaml"))
            );
        }
        assert!(parse_all(Vec::new()).is_empty());
    }
}
