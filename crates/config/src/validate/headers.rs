//! Header names and values in matches and header operations, as Istio and Envoy accept them.

use sluice_model::location::{push_index, push_key};
use sluice_model::{HeaderOperations, Headers};

use super::Ctx;

const PSEUDO_HEADERS: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":status"];

/// Whether `name` is an RFC 7230 token (the characters allowed in a header name).
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header-match key is the JWT-claim form `@request.auth.claims.x` / `@request.auth.claims[a][b]`.
pub(crate) fn is_jwt_claim(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(head) = name.get(..PREFIX.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = &name[PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// Checks a header name used as a match key (token, pseudo-header or JWT claim).
pub(crate) fn check_match_header_name(ctx: &mut Ctx<'_>, field: &str, name: &str) {
    if name.is_empty() {
        ctx.error(field, "header name must not be empty");
    } else if !is_jwt_claim(name) && !PSEUDO_HEADERS.contains(&name) && !is_token(name) {
        ctx.error(
            field,
            format!(
                "invalid header name `{name}`: must be letters, digits and !#$%&'*+-.^_`|~, a pseudo-header ({}) or @request.auth.claims.<claim>",
                PSEUDO_HEADERS.join(" ")
            ),
        );
    }
}

/// Checks header operations (`headers.request|response.set|add|remove`).
pub(crate) fn check_headers(ctx: &mut Ctx<'_>, field: &str, headers: &Headers) {
    if let Some(req) = &headers.request {
        check_header_ops(ctx, &push_key(field, "request"), req, true);
    }
    if let Some(resp) = &headers.response {
        check_header_ops(ctx, &push_key(field, "response"), resp, false);
    }
}

fn check_header_ops(ctx: &mut Ctx<'_>, field: &str, ops: &HeaderOperations, request: bool) {
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        let base = push_key(field, op);
        for (name, value) in map {
            let path = push_key(&base, name);
            if let Some(msg) = header_op_name_error(name, request) {
                ctx.error(&path, msg);
            }
            if let Err(e) = check_header_value(value) {
                ctx.error(&path, e);
            }
        }
    }
    let base = push_key(field, "remove");
    for (i, name) in ops.remove.iter().enumerate() {
        if let Some(msg) = header_op_name_error(name, false) {
            ctx.error(push_index(&base, i), msg);
        }
    }
}

/// Why a header may not be written: `Host`/`:authority` only in request set/add (an authority rewrite).
fn header_op_name_error(name: &str, host_allowed: bool) -> Option<String> {
    let authority = name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority");
    if name.is_empty() {
        Some("header name must not be empty".into())
    } else if host_allowed && authority {
        None
    } else if name.eq_ignore_ascii_case("host") {
        Some(format!(
            "invalid header `{name}`: Host can only be changed with request `set`/`add` (or rewrite.authority)"
        ))
    } else if name.starts_with(':') {
        Some(format!(
            "invalid header `{name}`: pseudo-headers (`:` prefix) cannot be modified"
        ))
    } else {
        None
    }
}

/// Envoy parses `%VAR%` operators in header values, so a stray `%` is a NACK (a literal one is `%%`).
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "invalid header value {value:?}: control characters (other than tab) are not allowed"
        ));
    }
    #[derive(PartialEq)]
    enum S {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let bad = |why: &str| {
        Err(format!(
            "invalid header value `{value}`: {why} (write a literal percent sign as `%%`)"
        ))
    };
    let b = value.as_bytes();
    let mut state = S::Literal;
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        let has_next = i + 1 < b.len();
        match state {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return bad("un-escaped `%` at the end");
                    }
                    if b[i + 1] == b'%' {
                        i += 1;
                    } else {
                        state = S::VarName;
                    }
                }
            }
            S::VarName => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch == b'(' {
                    state = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    state = S::ExpectString;
                } else if ch != b' ' {
                    state = S::InString;
                }
            }
            S::ExpectDelimOrEnd => {
                if ch == b',' {
                    state = S::ExpectString;
                } else if ch == b']' {
                    state = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return bad("expected `,` or `]` in the operator arguments");
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    state = S::InString;
                } else if ch != b' ' {
                    return bad("expected `\"` in the operator arguments");
                }
            }
            S::InString => {
                if ch == b'\\' {
                    if !has_next {
                        return bad("unterminated backslash escape");
                    }
                    i += 1;
                } else if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch == b'"' {
                    state = S::ExpectDelimOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch != b' ' {
                    return bad("expected `)` after the operator arguments");
                }
            }
            S::ExpectVarEnd => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch != b' ' {
                    return bad("expected `%` to close the operator");
                }
            }
        }
        i += 1;
    }
    if state != S::Literal {
        return bad("unterminated `%VARIABLE%` expression");
    }
    Ok(())
}
