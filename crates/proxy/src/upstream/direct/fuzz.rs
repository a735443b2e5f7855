//! Fuzzing entries for the direct client's parsers: each feeds arbitrary bytes whole and in
//! pieces, and panics when the two disagree (a parser must not depend on how reads split).

use bytes::BytesMut;

use super::chunked::{Chunked, Decoded};
use super::head::{parse_response, NameCache, Parsed};

/// A parse outcome reduced to what must not depend on read boundaries.
#[derive(Debug, PartialEq, Eq)]
enum HeadOutcome {
    /// Still incomplete after all the input.
    Partial,
    /// Rejected.
    Error,
    /// A final head: status, field count, keep-alive, and the bytes consumed up to its end.
    Final(u16, usize, bool, usize),
}

fn parse_all(pieces: &[&[u8]]) -> HeadOutcome {
    let mut names = NameCache::default();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match parse_response(&mut buf, false, &mut names) {
                Err(_) => return HeadOutcome::Error,
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Informational) => continue,
                Ok(Parsed::Final(h)) => {
                    return HeadOutcome::Final(
                        h.status.as_u16(),
                        h.headers.len(),
                        h.keep_alive,
                        fed - buf.len(),
                    )
                }
            }
        }
    }
    HeadOutcome::Partial
}

/// Parses `data` as an upstream response head, whole and split at `cut`; panics on disagreement.
pub fn response_head(data: &[u8], cut: usize) {
    let cut = cut.min(data.len());
    let whole = parse_all(&[data]);
    let split = parse_all(&[&data[..cut], &data[cut..]]);
    // A head rejected or complete within the first piece ends the split parse early with the
    // same verdict; a partial first piece must reach the whole parse's verdict.
    assert_eq!(
        whole, split,
        "response head parse depends on the read boundary at {cut}"
    );
}

/// A decoding outcome: the body bytes, and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Body {
    data: Vec<u8>,
    end: &'static str,
}

fn decode_all(pieces: &[&[u8]]) -> Body {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match state.decode(&mut buf) {
                Err(_) => return Body { data, end: "error" },
                Ok(Decoded::Data(d)) => data.extend_from_slice(&d),
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Trailers(_)) => {
                    return Body {
                        data,
                        end: "trailers",
                    }
                }
                Ok(Decoded::End) => return Body { data, end: "end" },
            }
        }
    }
    Body {
        data,
        end: "partial",
    }
}

/// Decodes `data` as a chunked body, whole and one byte at a time; panics on disagreement.
pub fn chunked_body(data: &[u8]) {
    let whole = decode_all(&[data]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let trickle = decode_all(&bytes);
    // Over-long size lines are judged on what is buffered, so a trickle may wait where the whole
    // input already fails; every other outcome must match.
    if whole.end == "error" && trickle.end == "partial" {
        return;
    }
    assert_eq!(
        whole, trickle,
        "chunked decoding depends on read boundaries"
    );
}
